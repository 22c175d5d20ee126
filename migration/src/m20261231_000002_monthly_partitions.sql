-- Engagement and patient events are partitioned by month (issue 23), so retention drops a
-- partition instead of deleting rows, and indexes stay small as years of events pile up.
--
-- engagement_event: RANGE on occurred_at (UTC months). Its id stays a bigint from one sequence;
-- the primary key is (id, occurred_at), as a partitioned table's unique keys must hold the
-- partition key. Nothing references its rows.
-- patient_event: RANGE on id. Ids are UUIDv7, whose first 48 bits are the receipt time in
-- milliseconds, so a month is a range of ids, the primary key stays (id) and the foreign keys
-- that name an event (outbox, enrolments, messages) keep working. Ids of another form (none are
-- written today) land in the default partition.
-- Each table has a default partition for rows outside the prepared months (backdated history, an
-- import of old events); `hermetic_ensure_month_partition` moves such rows into a month's new
-- partition when it is created. Maintenance prepares the coming months and, when configured,
-- drops months older than the retention period.

-- The UUIDv7 that starts at instant t (the smallest id minted in or after that millisecond).
CREATE FUNCTION hermetic_uuid7_floor(t timestamptz) RETURNS uuid LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT (lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') || '00000000000000000000')::uuid
$$;

-- Create (if missing) the partition of `tbl` for the UTC month starting `month`, moving any of
-- its rows out of the default partition first.
CREATE FUNCTION hermetic_ensure_month_partition(tbl text, month date) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    m date := date_trunc('month', month)::date;
    part text := format('%s_y%sm%s', tbl, to_char(m, 'YYYY'), to_char(m, 'MM'));
    lo timestamptz := (m::timestamp AT TIME ZONE 'UTC');
    hi timestamptz := ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
    cond text;
    bounds text;
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    IF tbl = 'engagement_event' THEN
        cond := format('occurred_at >= %L AND occurred_at < %L', lo, hi);
        bounds := format('FROM (%L) TO (%L)', lo, hi);
    ELSIF tbl = 'patient_event' THEN
        cond := format('id >= %L AND id < %L', hermetic_uuid7_floor(lo), hermetic_uuid7_floor(hi));
        bounds := format('FROM (%L) TO (%L)', hermetic_uuid7_floor(lo), hermetic_uuid7_floor(hi));
    ELSE
        RAISE EXCEPTION 'not a partitioned event table: %', tbl;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part, tbl);
    EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %s RETURNING *) INSERT INTO %I SELECT * FROM moved',
                   tbl || '_default', cond, part);
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES %s', tbl, part, bounds);
    RETURN true;
END
$$;

-- engagement_event ------------------------------------------------------------------------------
CREATE SEQUENCE engagement_event_id_seq_p;
CREATE TABLE engagement_event_p (
    id              bigint NOT NULL DEFAULT nextval('engagement_event_id_seq_p'),
    organisation_id uuid NOT NULL REFERENCES organisation (id),
    contact_id      uuid NOT NULL REFERENCES contact (id) ON DELETE CASCADE,
    campaign_id     uuid,
    activity        text NOT NULL CHECK (activity IN ('opened', 'clicked', 'bounced', 'unsubscribed')),
    -- A privacy proxy (Apple Mail Privacy Protection) or a link scanner, not a person.
    machine         boolean NOT NULL DEFAULT false,
    occurred_at     timestamptz NOT NULL,
    delivery_id     uuid,
    link_position   integer,
    machine_reason  text CHECK (machine_reason IN ('prefetch', 'privacy_proxy', 'scanner')),
    PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE TABLE engagement_event_p_default PARTITION OF engagement_event_p DEFAULT;
INSERT INTO engagement_event_p (id, organisation_id, contact_id, campaign_id, activity, machine, occurred_at,
                                delivery_id, link_position, machine_reason)
SELECT id, organisation_id, contact_id, campaign_id, activity, machine, occurred_at, delivery_id, link_position,
       machine_reason
FROM engagement_event;
SELECT setval('engagement_event_id_seq_p', coalesce((SELECT max(id) FROM engagement_event), 0) + 1, false);
DROP TABLE engagement_event;
ALTER TABLE engagement_event_p RENAME TO engagement_event;
ALTER TABLE engagement_event_p_default RENAME TO engagement_event_default;
ALTER SEQUENCE engagement_event_id_seq_p RENAME TO engagement_event_id_seq;
ALTER SEQUENCE engagement_event_id_seq OWNED BY engagement_event.id;
CREATE INDEX engagement_contact ON engagement_event (contact_id, activity, occurred_at);
CREATE INDEX engagement_campaign ON engagement_event (campaign_id, activity);
CREATE INDEX engagement_delivery ON engagement_event (delivery_id, activity);
CREATE TRIGGER engagement_report_capture AFTER INSERT ON engagement_event
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION report_capture_engagement();

-- patient_event ---------------------------------------------------------------------------------
ALTER TABLE event_outbox DROP CONSTRAINT event_outbox_event_id_fkey;
ALTER TABLE enrolment DROP CONSTRAINT enrolment_trigger_event_id_fkey;
ALTER TABLE api_message DROP CONSTRAINT api_message_event_id_fkey;
CREATE TABLE patient_event_p (
    id              uuid NOT NULL,
    organisation_id uuid NOT NULL REFERENCES organisation (id),
    contact_id      uuid NOT NULL REFERENCES contact (id) ON DELETE CASCADE,
    event_type      text NOT NULL CHECK (event_type ~ '^[a-z][a-z0-9_.]{0,63}$'),
    properties      bytea,
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);
CREATE TABLE patient_event_p_default PARTITION OF patient_event_p DEFAULT;
INSERT INTO patient_event_p SELECT id, organisation_id, contact_id, event_type, properties, occurred_at, received_at
FROM patient_event;
DROP TABLE patient_event;
ALTER TABLE patient_event_p RENAME TO patient_event;
ALTER TABLE patient_event_p_default RENAME TO patient_event_default;
ALTER INDEX patient_event_p_pkey RENAME TO patient_event_pkey;
CREATE INDEX patient_event_contact ON patient_event (contact_id, event_type, occurred_at);
CREATE INDEX patient_event_org_received ON patient_event (organisation_id, received_at);
ALTER TABLE event_outbox ADD CONSTRAINT event_outbox_event_id_fkey
    FOREIGN KEY (event_id) REFERENCES patient_event (id) ON DELETE CASCADE;
ALTER TABLE enrolment ADD CONSTRAINT enrolment_trigger_event_id_fkey
    FOREIGN KEY (trigger_event_id) REFERENCES patient_event (id) ON DELETE SET NULL;
ALTER TABLE api_message ADD CONSTRAINT api_message_event_id_fkey
    FOREIGN KEY (event_id) REFERENCES patient_event (id) ON DELETE SET NULL;

-- The months that hold rows, and the next three.
DO $$
DECLARE m date;
BEGIN
    FOR m IN SELECT generate_series(
                 date_trunc('month', least(coalesce((SELECT min(occurred_at) FROM engagement_event_default), now()), now())),
                 date_trunc('month', now() + interval '3 months'), interval '1 month')::date
    LOOP
        PERFORM hermetic_ensure_month_partition('engagement_event', m);
    END LOOP;
    FOR m IN SELECT generate_series(
                 date_trunc('month', least(coalesce((SELECT min(received_at) FROM patient_event_default), now()), now())),
                 date_trunc('month', now() + interval '3 months'), interval '1 month')::date
    LOOP
        PERFORM hermetic_ensure_month_partition('patient_event', m);
    END LOOP;
END
$$;
