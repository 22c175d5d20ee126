-- Triggered follow-up sequences (issue 22).
--
-- A sequence has versions; a published version is immutable and an enrolment finishes the version
-- it entered. Definitions may hold PHI literals (a trigger condition `department = cardiology`),
-- so each is kept sealed under the organisation's data key (AAD: organisation, "sequence_version",
-- "sealed_definition", version id; drafts: "sequence", "sealed_draft", sequence id), with a plain
-- copy whose literals are masked for listing and for people who may not read contacts.
CREATE TABLE sequence (
    id                  uuid PRIMARY KEY,
    organisation_id     uuid NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 120),
    status              text NOT NULL CHECK (status IN ('draft', 'active', 'paused', 'archived')),
    -- The unpublished working copy the builder edits.
    draft               jsonb NOT NULL,
    sealed_draft        bytea NOT NULL,
    -- The sender of its emails (an address on a verified sending domain, checked at publish and
    -- again at send time).
    from_name           text NOT NULL DEFAULT '',
    from_email          text NOT NULL DEFAULT '',
    current_version_id  uuid,
    created_by          uuid REFERENCES app_user (id) ON DELETE SET NULL,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    UNIQUE (organisation_id, id)
);

CREATE TABLE sequence_version (
    id                  uuid PRIMARY KEY,
    organisation_id     uuid NOT NULL,
    sequence_id         uuid NOT NULL REFERENCES sequence (id) ON DELETE CASCADE,
    number              integer NOT NULL CHECK (number >= 1),
    definition          jsonb NOT NULL,
    sealed_definition   bytea NOT NULL,
    -- For matching events without opening definitions: the trigger's event type (NULL for other
    -- triggers), the trigger's list, and the event types enrolments inside watch (goal, exits,
    -- waits-for).
    trigger_event_type  text,
    trigger_list_id     uuid,
    watched_event_types text[] NOT NULL DEFAULT '{}',
    published_by        uuid REFERENCES app_user (id) ON DELETE SET NULL,
    published_at        timestamptz NOT NULL,
    UNIQUE (sequence_id, number),
    FOREIGN KEY (organisation_id, sequence_id) REFERENCES sequence (organisation_id, id) ON DELETE CASCADE
);
ALTER TABLE sequence ADD CONSTRAINT sequence_current_version
    FOREIGN KEY (current_version_id) REFERENCES sequence_version (id) DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX sequence_version_trigger ON sequence_version (organisation_id, trigger_event_type);

-- One row per enrolment: where a contact is in a version, and when it next needs the engine.
-- A waiting patient is this row, not a job: due rows are claimed with FOR UPDATE SKIP LOCKED.
CREATE TABLE enrolment (
    id                  uuid PRIMARY KEY,
    organisation_id     uuid NOT NULL,
    sequence_id         uuid NOT NULL,
    version_id          uuid NOT NULL REFERENCES sequence_version (id),
    contact_id          uuid NOT NULL REFERENCES contact (id) ON DELETE CASCADE,
    -- The event that started it (NULL for list and manual triggers); its properties feed waits,
    -- branches and the templates' `event.` namespace.
    trigger_event_id    uuid REFERENCES patient_event (id) ON DELETE SET NULL,
    -- A keyed hash of the trigger's correlation value (never the value), to match later events.
    correlation_bidx    bytea,
    state               text NOT NULL CHECK (state IN ('active', 'completed', 'converted', 'exited')),
    end_reason          text,
    step_id             text,
    -- Step visits so far: (enrolment, visit) identifies each step execution.
    visit               integer NOT NULL DEFAULT 0,
    step_started_at     timestamptz NOT NULL,
    wake_at             timestamptz,
    -- A wait-for step's awaited event arrived (set by the event consumer or a tracked open/click).
    awaited_at          timestamptz,
    entered_at          timestamptz NOT NULL,
    ended_at            timestamptz,
    FOREIGN KEY (organisation_id, sequence_id) REFERENCES sequence (organisation_id, id) ON DELETE CASCADE,
    CHECK ((state = 'active') = (ended_at IS NULL))
);
CREATE INDEX enrolment_due ON enrolment (wake_at) WHERE state = 'active';
CREATE INDEX enrolment_contact ON enrolment (contact_id, sequence_id);
CREATE INDEX enrolment_sequence ON enrolment (sequence_id, state, step_id);

-- The decision trail and the exactly-once record of step executions: one row per (enrolment,
-- visit), written in the transaction that moves the enrolment on. Ids and codes only, no PHI.
CREATE TABLE enrolment_step (
    enrolment_id        uuid NOT NULL REFERENCES enrolment (id) ON DELETE CASCADE,
    visit               integer NOT NULL,
    step_id             text NOT NULL,
    kind                text NOT NULL,
    outcome             text NOT NULL,
    -- The message sent (a delivery id), the event that decided, the time waited until …
    detail              jsonb NOT NULL DEFAULT '{}',
    at                  timestamptz NOT NULL,
    PRIMARY KEY (enrolment_id, visit)
);

-- Sequence emails are one-recipient messages like the API's: the same `api_message` row (pinned
-- template version, sender) and the same send job, with their own delivery source, their consent
-- purpose, the enrolment and the step they belong to, and the trigger event whose properties the
-- template's `event.` namespace reads (opened at send time, never copied).
ALTER TABLE api_message ADD COLUMN purpose text NOT NULL DEFAULT 'transactional'
    CHECK (purpose IN ('marketing', 'care_communications', 'transactional'));
ALTER TABLE api_message ADD COLUMN enrolment_id uuid REFERENCES enrolment (id) ON DELETE SET NULL;
ALTER TABLE api_message ADD COLUMN step_id text;
ALTER TABLE api_message ADD COLUMN event_id uuid REFERENCES patient_event (id) ON DELETE SET NULL;
CREATE INDEX api_message_enrolment ON api_message (enrolment_id) WHERE enrolment_id IS NOT NULL;

ALTER TABLE delivery DROP CONSTRAINT delivery_source_check;
ALTER TABLE delivery ADD CONSTRAINT delivery_source_check CHECK (source IN ('campaign', 'api_message', 'sequence_step'));
ALTER TABLE delivery_queue DROP CONSTRAINT delivery_queue_source_check;
ALTER TABLE delivery_queue ADD CONSTRAINT delivery_queue_source_check CHECK (source IN ('campaign', 'api_message', 'sequence_step'));
DROP INDEX delivery_queue_api_message_due;
CREATE INDEX delivery_queue_message_due ON delivery_queue (not_before)
    WHERE source IN ('api_message', 'sequence_step') AND claimed_by IS NULL;
