-- Outgoing webhooks (issue 21, item 6). An organisation's endpoints, one row per (event,
-- endpoint) to deliver, and every attempt. Rows hold ids, codes and HTTP status classes only:
-- the payload (`data`) is built from ids and codes, never PHI.

CREATE TABLE webhook_endpoint (
    id              uuid PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES organisation (id),
    url             text NOT NULL CHECK (length(url) <= 2048),
    events          text[] NOT NULL,
    enabled         boolean NOT NULL DEFAULT true,
    -- Why Hermetic turned it off ('gone': it answered 410); NULL when an administrator did.
    disabled_reason text,
    -- The signing secret, sealed under the organisation's data key (AAD table webhook_endpoint,
    -- column secret, row id): the server computes HMACs with it.
    secret          bytea NOT NULL,
    created_by      uuid REFERENCES app_user (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
-- The outcome statement of the send path joins on this for every batch: it must stay tiny and
-- cheap when no organisation has an endpoint.
CREATE INDEX webhook_endpoint_enabled ON webhook_endpoint (organisation_id) WHERE enabled;

CREATE TABLE webhook_delivery (
    id              uuid PRIMARY KEY,
    -- One event reported to several endpoints has one id (the payload's `id`).
    event_id        uuid NOT NULL,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoint (id) ON DELETE CASCADE,
    organisation_id uuid NOT NULL REFERENCES organisation (id),
    event_type      text NOT NULL,
    data            jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    updated_at      timestamptz NOT NULL,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_delivery_endpoint ON webhook_delivery (endpoint_id, created_at DESC);
-- Maintenance deletes finished deliveries after 30 days.
CREATE INDEX webhook_delivery_finished ON webhook_delivery (created_at) WHERE state <> 'pending';

CREATE TABLE webhook_attempt (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id     uuid NOT NULL REFERENCES webhook_delivery (id) ON DELETE CASCADE,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoint (id) ON DELETE CASCADE,
    attempt         integer NOT NULL,
    at              timestamptz NOT NULL,
    -- The HTTP status, or the class of error when there was no answer (never a response body).
    status          integer,
    error           text,
    next_attempt_at timestamptz
);
CREATE INDEX webhook_attempt_endpoint ON webhook_attempt (endpoint_id, at DESC);
-- Deleting a delivery deletes its attempts.
CREATE INDEX webhook_attempt_delivery ON webhook_attempt (delivery_id);
