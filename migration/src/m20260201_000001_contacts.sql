-- Contacts (PHI), custom fields, lists, suppression, the consent ledger and CSV imports.
-- PHI columns hold sealed values (service::crypto::seal: version, key id, nonce, AES-256-GCM-SIV
-- ciphertext bound to organisation/table/column/row); email also has an HMAC blind index for
-- exact lookup and de-duplication. Nothing in this schema stores PHI in plaintext.

CREATE TABLE contact_field (
    id              uuid PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES organisation (id),
    key             text NOT NULL CHECK (key ~ '^[a-z][a-z0-9_]{0,39}$'),
    label           text NOT NULL CHECK (length(label) BETWEEN 1 AND 100),
    field_type      text NOT NULL CHECK (field_type IN ('text', 'number', 'date', 'boolean', 'one_of')),
    options         jsonb NOT NULL DEFAULT '[]',
    is_phi          boolean NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    UNIQUE (organisation_id, key)
);

CREATE TABLE contact (
    id              uuid PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES organisation (id),
    email_bidx      bytea NOT NULL,
    email           bytea NOT NULL,
    first_name      bytea,
    last_name       bytea,
    phone           bytea,
    date_of_birth   bytea,
    time_zone       text,
    locale          text,
    -- Non-PHI custom fields, plain so segments can filter them in SQL.
    attrs           jsonb NOT NULL DEFAULT '{}',
    -- PHI custom fields: one sealed JSON object.
    phi_attrs       bytea,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    UNIQUE (organisation_id, email_bidx)
);
CREATE INDEX contact_org_page ON contact (organisation_id, created_at DESC, id DESC);

CREATE TABLE contact_list (
    id              uuid PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES organisation (id),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    description     text NOT NULL DEFAULT '' CHECK (length(description) <= 500),
    double_opt_in   boolean NOT NULL DEFAULT false,
    purpose         text NOT NULL DEFAULT 'marketing' CHECK (purpose IN ('marketing', 'care_communications')),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    UNIQUE (organisation_id, name),
    -- Lets members reference (organisation, list), so a membership can never cross tenants.
    UNIQUE (organisation_id, id)
);

CREATE TABLE list_member (
    organisation_id uuid NOT NULL,
    list_id         uuid NOT NULL,
    contact_id      uuid NOT NULL REFERENCES contact (id) ON DELETE CASCADE,
    status          text NOT NULL CHECK (status IN ('pending', 'subscribed', 'unsubscribed')),
    source          text NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    confirmed_at    timestamptz,
    PRIMARY KEY (list_id, contact_id),
    FOREIGN KEY (organisation_id, list_id) REFERENCES contact_list (organisation_id, id) ON DELETE CASCADE
);
CREATE INDEX list_member_contact ON list_member (contact_id);
CREATE INDEX list_member_status ON list_member (list_id, status);

-- Keyed by the email's blind index so a suppression outlives the contact and catches re-imports.
CREATE TABLE suppression (
    organisation_id uuid NOT NULL REFERENCES organisation (id),
    email_bidx      bytea NOT NULL,
    reason          text NOT NULL CHECK (reason IN ('unsubscribed', 'hard_bounce', 'complaint', 'manual')),
    created_at      timestamptz NOT NULL,
    created_by      uuid,
    PRIMARY KEY (organisation_id, email_bidx)
);

-- The consent ledger: append-only evidence (who, what, when, how, which consent text).
CREATE TABLE consent_event (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id uuid NOT NULL,
    contact_id      uuid NOT NULL,
    purpose         text NOT NULL CHECK (purpose IN ('marketing', 'care_communications')),
    granted         boolean NOT NULL,
    source          text NOT NULL CHECK (source IN ('import', 'form', 'api', 'admin', 'double_opt_in', 'unsubscribe')),
    text_hash       bytea,
    occurred_at     timestamptz NOT NULL,
    actor_user_id   uuid,
    import_id       uuid
);
CREATE INDEX consent_event_contact ON consent_event (contact_id, purpose, occurred_at DESC);
CREATE TRIGGER consent_event_no_update_delete BEFORE UPDATE OR DELETE ON consent_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
CREATE TRIGGER consent_event_no_truncate BEFORE TRUNCATE ON consent_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();

-- The current state per (contact, purpose), maintained with the ledger in the same transaction,
-- so audience queries need not scan the ledger.
CREATE TABLE contact_consent (
    organisation_id uuid NOT NULL,
    contact_id      uuid NOT NULL REFERENCES contact (id) ON DELETE CASCADE,
    purpose         text NOT NULL,
    granted         boolean NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (contact_id, purpose)
);

CREATE TABLE contact_import (
    id              uuid PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES organisation (id),
    created_by      uuid REFERENCES app_user (id),
    status          text NOT NULL CHECK (status IN ('uploading', 'uploaded', 'queued', 'running', 'completed', 'failed', 'cancelled')),
    file_bytes      bigint NOT NULL DEFAULT 0,
    file_sha256     bytea,
    chunks          integer NOT NULL DEFAULT 0,
    -- Column headers of the file (sealed: a header row could itself hold data).
    headers         bytea,
    mapping         jsonb,
    dedupe          text CHECK (dedupe IN ('update', 'skip')),
    list_ids        uuid[] NOT NULL DEFAULT '{}',
    consent_purpose text CHECK (consent_purpose IN ('marketing', 'care_communications')),
    consent_text_hash bytea,
    bytes_done      bigint NOT NULL DEFAULT 0,
    rows_done       bigint NOT NULL DEFAULT 0,
    rows_created    bigint NOT NULL DEFAULT 0,
    rows_updated    bigint NOT NULL DEFAULT 0,
    rows_skipped    bigint NOT NULL DEFAULT 0,
    rows_failed     bigint NOT NULL DEFAULT 0,
    failure         text,
    created_at      timestamptz NOT NULL,
    started_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX contact_import_org ON contact_import (organisation_id, created_at DESC);

-- The uploaded file, sealed in chunks (never written to disk in plaintext); deleted after import.
CREATE TABLE import_chunk (
    import_id       uuid NOT NULL REFERENCES contact_import (id) ON DELETE CASCADE,
    seq             integer NOT NULL,
    data            bytea NOT NULL,
    PRIMARY KEY (import_id, seq)
);

-- Row-level problems: row number, column and a message — never the cell's value.
CREATE TABLE import_error (
    import_id       uuid NOT NULL REFERENCES contact_import (id) ON DELETE CASCADE,
    row_number      bigint NOT NULL,
    column_name     text NOT NULL,
    message         text NOT NULL
);
CREATE INDEX import_error_row ON import_error (import_id, row_number);

-- Double opt-in confirmations (the email link carries a token; only its hash is stored).
CREATE TABLE optin_token (
    token_hash      bytea PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES organisation (id),
    list_id         uuid NOT NULL REFERENCES contact_list (id) ON DELETE CASCADE,
    contact_id      uuid NOT NULL REFERENCES contact (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz
);

-- Key rotation progress for an organisation's data key.
CREATE TABLE key_rotation (
    id              uuid PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES organisation (id),
    old_key_id      uuid NOT NULL,
    new_key_id      uuid NOT NULL,
    status          text NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    rows_done       bigint NOT NULL DEFAULT 0,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz
);

-- Mail captured instead of sent when no SMTP relay is configured (development). Sealed: a message
-- can contain PHI.
CREATE TABLE dev_mailbox (
    id              uuid PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES organisation (id),
    created_at      timestamptz NOT NULL,
    recipient       bytea NOT NULL,
    subject         bytea NOT NULL,
    message         bytea NOT NULL
);
CREATE INDEX dev_mailbox_org ON dev_mailbox (organisation_id, created_at DESC);
