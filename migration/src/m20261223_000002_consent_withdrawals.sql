-- A withdrawal of consent holds until the patient consents again (issue 18).
--
-- contact_consent.withdrawn_at is the time of the withdrawal currently in force (NULL while consent
-- is granted). A grant from an import, a staff member or an integration does not lift it; only a
-- grant the patient made themself (a confirmed double opt-in, the preferences page) that is not
-- older than the withdrawal does. The rule lives in service::contacts::consent, in one statement
-- every source goes through.
ALTER TABLE contact_consent ADD COLUMN withdrawn_at timestamptz;
ALTER TABLE contact_consent ADD COLUMN withdrawn_source text
    CHECK (withdrawn_source IN ('import', 'form', 'api', 'admin', 'double_opt_in', 'unsubscribe'));
UPDATE contact_consent cc SET withdrawn_at = cc.updated_at,
    withdrawn_source = (SELECT e.source FROM consent_event e
                        WHERE e.contact_id = cc.contact_id AND e.purpose = cc.purpose AND NOT e.granted
                        ORDER BY e.occurred_at DESC, e.id DESC LIMIT 1)
WHERE NOT cc.granted;
ALTER TABLE contact_consent ADD CONSTRAINT contact_consent_withdrawal CHECK (granted = (withdrawn_at IS NULL));

-- The ledger stays honest: every event is recorded as what it was, and `effective` says whether
-- it changed the current state (a staff grant after a patient's withdrawal is recorded, not applied).
ALTER TABLE consent_event ADD COLUMN effective boolean NOT NULL DEFAULT true;

-- Withdrawals outlive the contact: deleting a contact keeps its withdrawals under its email's blind
-- index, and a contact created again with that address (by hand, import or integration) starts
-- withdrawn for those purposes. Keyed like the suppression list; holds no PHI.
CREATE TABLE consent_withdrawal_kept (
    organisation_id uuid NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
    email_bidx      bytea NOT NULL,
    purpose         text NOT NULL CHECK (purpose IN ('marketing', 'care_communications')),
    withdrawn_at    timestamptz NOT NULL,
    source          text,
    PRIMARY KEY (organisation_id, email_bidx, purpose)
);

-- The import report counts the rows whose withdrawal held against the import's grant.
ALTER TABLE contact_import ADD COLUMN rows_kept_withdrawn bigint NOT NULL DEFAULT 0;
