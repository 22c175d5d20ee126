-- Transactional messages through the API (`POST /api/v1/messages`): a template to one contact,
-- sent through the one delivery pipeline as a delivery row of source 'api_message'.
--
-- The message row holds what the send needs and nothing readable: the template version pinned at
-- acceptance, the key that asked, and the merge data the integration sent (PHI: sealed under the
-- organisation's data key, AAD table 'api_message', column 'data', the message id). The delivery
-- row has the message's id, so a message is its delivery: status and engagement are read there.
CREATE TABLE api_message (
    id                  uuid PRIMARY KEY,
    organisation_id     uuid NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
    api_key_id          uuid REFERENCES api_key (id) ON DELETE SET NULL,
    template_id         uuid NOT NULL,
    template_version_id uuid NOT NULL,
    -- The From address on one of the organisation's verified sending domains, chosen at acceptance.
    from_email          text NOT NULL,
    from_name           text NOT NULL DEFAULT '',
    data                bytea,
    created_at          timestamptz NOT NULL,
    UNIQUE (organisation_id, id),
    FOREIGN KEY (organisation_id, template_version_id) REFERENCES template_version (organisation_id, id)
);

-- The tracked links of a message's pinned version, by position (click tokens carry a position,
-- never a URL), as campaign_link does for campaigns.
CREATE TABLE api_message_link (
    message_id      uuid NOT NULL REFERENCES api_message (id) ON DELETE CASCADE,
    position        integer NOT NULL CHECK (position >= 0),
    url             text NOT NULL,
    PRIMARY KEY (message_id, position)
);

-- A delivery belongs to a campaign or to an API message: campaign_id is NULL for the latter.
ALTER TABLE delivery ALTER COLUMN campaign_id DROP NOT NULL;
ALTER TABLE delivery DROP CONSTRAINT delivery_source_check;
ALTER TABLE delivery ADD CONSTRAINT delivery_source_check CHECK (source IN ('campaign', 'api_message'));
ALTER TABLE delivery ADD CONSTRAINT delivery_source_row CHECK ((source = 'campaign') = (campaign_id IS NOT NULL));
ALTER TABLE delivery_queue ALTER COLUMN campaign_id DROP NOT NULL;
ALTER TABLE delivery_queue DROP CONSTRAINT delivery_queue_source_check;
ALTER TABLE delivery_queue ADD CONSTRAINT delivery_queue_source_check CHECK (source IN ('campaign', 'api_message'));
ALTER TABLE delivery_queue ADD CONSTRAINT delivery_queue_source_row CHECK ((source = 'campaign') = (campaign_id IS NOT NULL));
-- The campaign tick's sweep for API messages whose send job was lost reads only these rows; without
-- the index it would scan a running campaign's whole queue on every tick.
CREATE INDEX delivery_queue_api_message_due ON delivery_queue (not_before) WHERE source = 'api_message' AND claimed_by IS NULL;

-- Opens, clicks and bounces of an API message have no campaign.
ALTER TABLE engagement_event ALTER COLUMN campaign_id DROP NOT NULL;

-- The consent purpose of transactional mail (appointment confirmations and the like). No grant is
-- needed to send one; a withdrawal for this purpose (or an unsubscribe from everything) stops it.
ALTER TABLE consent_event DROP CONSTRAINT consent_event_purpose_check;
ALTER TABLE consent_event ADD CONSTRAINT consent_event_purpose_check
    CHECK (purpose IN ('marketing', 'care_communications', 'transactional'));
ALTER TABLE consent_withdrawal_kept DROP CONSTRAINT consent_withdrawal_kept_purpose_check;
ALTER TABLE consent_withdrawal_kept ADD CONSTRAINT consent_withdrawal_kept_purpose_check
    CHECK (purpose IN ('marketing', 'care_communications', 'transactional'));
ALTER TABLE contact_import DROP CONSTRAINT contact_import_consent_purpose_check;
ALTER TABLE contact_import ADD CONSTRAINT contact_import_consent_purpose_check
    CHECK (consent_purpose IN ('marketing', 'care_communications', 'transactional'));
