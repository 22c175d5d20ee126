-- Foundation schema: organisations, staff users, sessions, MFA, throttling, invitations, wrapped keys
-- and the hash-chained, append-only audit trail. Frozen once released: later changes get new files.

CREATE TABLE organisation (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL,
    deleted_at  timestamptz
);

-- Keys wrapped by the root key-encryption key (which never enters the database).
-- organisation_id NULL marks a system-wide key (for example the audit MAC key).
CREATE TABLE wrapped_key (
    id              uuid PRIMARY KEY,
    organisation_id uuid REFERENCES organisation (id),
    purpose         text NOT NULL CHECK (purpose IN ('data', 'blind_index', 'audit_mac')),
    version         integer NOT NULL CHECK (version > 0),
    wrapped         bytea NOT NULL,
    root_key_id     text NOT NULL,
    created_at      timestamptz NOT NULL,
    retired_at      timestamptz,
    destroyed_at    timestamptz
);
CREATE UNIQUE INDEX wrapped_key_one_active
    ON wrapped_key (coalesce(organisation_id, '00000000-0000-0000-0000-000000000000'::uuid), purpose)
    WHERE retired_at IS NULL AND destroyed_at IS NULL;

CREATE TABLE app_user (
    id                  uuid PRIMARY KEY,
    organisation_id     uuid NOT NULL REFERENCES organisation (id),
    email               text NOT NULL CHECK (email = lower(email) AND length(email) <= 254),
    display_name        text NOT NULL CHECK (length(display_name) <= 200),
    role                text NOT NULL CHECK (role IN ('admin', 'marketer', 'analyst')),
    status              text NOT NULL CHECK (status IN ('invited', 'active', 'disabled')),
    password_hash       text,
    password_changed_at timestamptz,
    totp_secret         bytea,
    totp_enrolled_at    timestamptz,
    totp_last_step      bigint,
    last_sign_in_at     timestamptz,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
-- An email identifies one account across Hermetic: sign-in does not ask for an organisation.
CREATE UNIQUE INDEX app_user_email ON app_user (email);
CREATE INDEX app_user_org ON app_user (organisation_id, created_at);

CREATE TABLE recovery_code (
    id              uuid PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES organisation (id),
    user_id         uuid NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    code_hash       bytea NOT NULL,
    used_at         timestamptz,
    created_at      timestamptz NOT NULL
);
CREATE INDEX recovery_code_user ON recovery_code (user_id) WHERE used_at IS NULL;

CREATE TABLE user_session (
    id                  uuid PRIMARY KEY,
    organisation_id     uuid NOT NULL REFERENCES organisation (id),
    user_id             uuid NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    token_hash          bytea NOT NULL UNIQUE,
    csrf_token          text NOT NULL,
    stage               text NOT NULL CHECK (stage IN ('mfa', 'enrol', 'active')),
    pending_totp_secret bytea,
    mfa_failures        integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL,
    last_seen_at        timestamptz NOT NULL,
    expires_at          timestamptz NOT NULL,
    revoked_at          timestamptz,
    revoked_reason      text,
    ip                  text,
    user_agent          text
);
CREATE INDEX user_session_user ON user_session (user_id) WHERE revoked_at IS NULL;
CREATE INDEX user_session_expiry ON user_session (expires_at);

-- Failed sign-in counters keyed by a hash of the account name or the client address, so that the
-- table never holds what people typed (users sometimes type a password into the email field).
CREATE TABLE login_throttle (
    key_kind          text NOT NULL CHECK (key_kind IN ('account', 'ip')),
    key_hash          bytea NOT NULL,
    failures          integer NOT NULL,
    window_started_at timestamptz NOT NULL,
    locked_until      timestamptz,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (key_kind, key_hash)
);

CREATE TABLE invite (
    id              uuid PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES organisation (id),
    user_id         uuid NOT NULL REFERENCES app_user (id) ON DELETE CASCADE,
    token_hash      bytea NOT NULL UNIQUE,
    created_by      uuid REFERENCES app_user (id),
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    accepted_at     timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX invite_user ON invite (user_id);

-- The audit trail. One hash chain per organisation (chain_id = organisation id) plus a system chain
-- (the nil uuid) for events with no organisation, such as a failed sign-in for an unknown account.
-- Each row's mac = HMAC-SHA256(audit key, prev_mac || canonical encoding of the row); the key is
-- wrapped by the root key, so someone with only database access cannot forge a consistent chain.
-- No foreign keys: the trail must outlive what it describes.
CREATE TABLE audit_event (
    seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chain_id         uuid NOT NULL,
    chain_seq        bigint NOT NULL,
    organisation_id  uuid,
    occurred_at      timestamptz NOT NULL,
    actor_kind       text NOT NULL,
    actor_user_id    uuid,
    actor_session_id uuid,
    action           text NOT NULL,
    outcome          text NOT NULL,
    target_kind      text,
    target_id        text,
    ip               text,
    details          text NOT NULL,
    prev_mac         bytea NOT NULL,
    mac              bytea NOT NULL,
    UNIQUE (chain_id, chain_seq)
);
CREATE INDEX audit_event_org_time ON audit_event (organisation_id, seq DESC);
CREATE INDEX audit_event_org_action ON audit_event (organisation_id, action, seq DESC);
CREATE INDEX audit_event_org_actor ON audit_event (organisation_id, actor_user_id, seq DESC);

CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_event is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_event_no_update_delete BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();

-- Results of chain verification runs (scheduled job and on demand), newest shown on the audit page.
CREATE TABLE audit_verification (
    id               uuid PRIMARY KEY,
    chain_id         uuid NOT NULL,
    checked_at       timestamptz NOT NULL,
    rows_checked     bigint NOT NULL,
    last_chain_seq   bigint NOT NULL,
    last_mac         bytea,
    first_broken_seq bigint,
    reason           text
);
CREATE INDEX audit_verification_chain ON audit_verification (chain_id, checked_at DESC);
