-- Sending domains (issue 18, item 12): a campaign may only send From an address on a domain the
-- organisation has proved it controls through DNS, signed with that domain's own DKIM key (d= the
-- From domain, so DMARC aligns).

CREATE TABLE sending_domain (
    id                  uuid PRIMARY KEY,
    organisation_id     uuid NOT NULL REFERENCES organisation (id),
    -- ASCII (A-label), lower case, no final dot: what DNS and From addresses carry.
    domain              text NOT NULL CHECK (domain = lower(domain) AND length(domain) BETWEEN 3 AND 253),
    -- Random per row, so two organisations trying the same domain publish different records.
    selector            text NOT NULL CHECK (selector ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    -- The DKIM private key (PKCS#8 DER), sealed under the organisation's data key
    -- (AAD: table sending_domain, column dkim_key, this row's id).
    dkim_key            bytea NOT NULL,
    -- Its public half (base64 SubjectPublicKeyInfo): what the DKIM record publishes.
    dkim_public         text NOT NULL,
    status              text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'verified', 'failed')),
    -- The last check, per record: [{"kind": "dkim", "ok": true, "reason": "..."}, ...].
    checks              jsonb NOT NULL DEFAULT '[]',
    last_checked_at     timestamptz,
    verified_at         timestamptz,
    created_by          uuid REFERENCES app_user (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    UNIQUE (organisation_id, domain)
);

-- A domain is verified for at most one organisation at a time.
CREATE UNIQUE INDEX sending_domain_verified_once ON sending_domain (domain) WHERE status = 'verified';
-- The maintenance job re-checks verified domains whose last check is oldest.
CREATE INDEX sending_domain_recheck ON sending_domain (last_checked_at) WHERE status = 'verified';

-- A campaign whose From domain stops being verified is paused with its own reason.
ALTER TABLE campaign DROP CONSTRAINT campaign_pause_reason_check;
ALTER TABLE campaign ADD CONSTRAINT campaign_pause_reason_check
    CHECK (pause_reason IN ('manual', 'error_streak', 'sending_domain'));
