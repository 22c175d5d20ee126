-- The machine interface (`/api/v1`): API keys, their usage log, idempotent replays, and the event
-- outbox the sequence engine reads.

-- A key's secret is never stored: only its SHA-256 (the secret carries 256 random bits, so a slow
-- hash adds nothing) and the first characters shown to tell keys apart. The signing secret for
-- `Hermetic-Signature` must be usable by the server, so it is sealed under the organisation's data
-- key (bound to organisation, "api_key", "signing_secret", id).
CREATE TABLE api_key (
    id                uuid PRIMARY KEY,
    organisation_id   uuid NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 80),
    shown_prefix      text NOT NULL,
    secret_hash       bytea NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    scopes            text[] NOT NULL CHECK (cardinality(scopes) >= 1),
    require_signature boolean NOT NULL,
    signing_secret    bytea,
    expires_at        timestamptz,
    created_by        uuid REFERENCES app_user (id) ON DELETE SET NULL,
    created_at        timestamptz NOT NULL,
    last_used_at      timestamptz,
    revoked_at        timestamptz,
    CHECK (NOT require_signature OR signing_secret IS NOT NULL)
);
CREATE INDEX api_key_org ON api_key (organisation_id, created_at DESC);

-- Every use of a key: route template, method, status, time. No bodies, no ids from the request.
-- Kept apart from the hash-chained audit trail, whose per-organisation chain lock would cap the
-- event API at one commit at a time (docs/architecture.md, "The event API").
CREATE TABLE api_request (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
    api_key_id      uuid NOT NULL REFERENCES api_key (id) ON DELETE CASCADE,
    method          text NOT NULL,
    route           text NOT NULL,
    status          smallint NOT NULL,
    occurred_at     timestamptz NOT NULL
);
CREATE INDEX api_request_key ON api_request (api_key_id, occurred_at DESC);

-- Idempotent POST/PUT: the stored answer to (key, Idempotency-Key), written in the transaction of
-- the change it answers, so a retry either finds it or finds nothing done. The client's key is
-- stored hashed (it is free text); the request hash covers method, route and body.
CREATE TABLE api_idempotency (
    api_key_id      uuid NOT NULL REFERENCES api_key (id) ON DELETE CASCADE,
    key_hash        bytea NOT NULL,
    request_hash    bytea NOT NULL,
    status          smallint NOT NULL,
    response        jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    PRIMARY KEY (api_key_id, key_hash)
);
CREATE INDEX api_idempotency_created ON api_idempotency (created_at);

-- Each accepted event, written with it: the sequence engine consumes (and deletes) these rows in
-- the transaction that acts on them, so it sees every event exactly once, across crashes.
CREATE TABLE event_outbox (
    event_id        uuid PRIMARY KEY REFERENCES patient_event (id) ON DELETE CASCADE,
    organisation_id uuid NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL
);
CREATE INDEX event_outbox_order ON event_outbox (created_at, event_id);

-- Events by organisation and time (the contact timeline reads by contact; the API by id).
CREATE INDEX patient_event_org_received ON patient_event (organisation_id, received_at);
