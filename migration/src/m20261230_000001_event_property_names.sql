-- The property names each patient event type has carried, per organisation (issue 22): publishing
-- a sequence checks the `event.<name>` fields of its emails, its correlation key and its property
-- conditions against the names its trigger's event type has carried.
--
-- Names only, never values: values are PHI and stay sealed in `patient_event.properties`. A name
-- is a code, not text: the events API refuses any other (`domain::api::valid_property_key`:
-- an ASCII letter, then letters, digits and _, at most 64), and the engine records only names
-- that pass the same rule.
--
-- Written by the sequence engine, which already opens each event's properties as it consumes
-- the outbox: one INSERT … ON CONFLICT DO NOTHING per batch, in the batch's transaction.
--
-- No backfill: this migration cannot open the sealed properties of events that arrived before
-- it, so they are not catalogued. Until an event of a type arrives, sequences on that type
-- publish unchecked and the builder says so.
CREATE TABLE event_property_name (
    organisation_id uuid        NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
    event_type      text        NOT NULL,
    name            text        NOT NULL CHECK (name ~ '^[A-Za-z][A-Za-z0-9_]{0,63}$'),
    first_seen_at   timestamptz NOT NULL,
    PRIMARY KEY (organisation_id, event_type, name)
);
