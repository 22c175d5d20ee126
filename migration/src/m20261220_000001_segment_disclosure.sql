-- Disclosure control for segments (issue 18, items 1 and 9).
--
-- The literal values of PHI conditions (e.g. `email = jane@…`, tests on patient-event properties)
-- are no longer kept in plaintext: `sealed_definition` holds the whole definition sealed under the
-- organisation's data key (AAD: organisation, "segment", "sealed_definition", segment id), and
-- `definition` keeps a copy with those literals removed, so listing, counting the conditions and
-- showing a segment to people who may not read contacts never needs the key. Rows saved before
-- this migration are sealed by the service (at start and in the maintenance job): keys are not
-- available to SQL.
ALTER TABLE segment ADD COLUMN sealed_definition bytea;

-- The per-user budget of counts that decrypt (a fixed window, shared by every process). One row
-- per user; taken with one atomic upsert before the count runs.
CREATE TABLE segment_count_budget (
    user_id           uuid PRIMARY KEY REFERENCES app_user (id) ON DELETE CASCADE,
    window_started_at timestamptz NOT NULL,
    used              integer NOT NULL CHECK (used >= 0)
);
