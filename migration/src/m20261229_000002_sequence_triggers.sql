-- Sequence triggers besides patient events (issue 22): being added to a list, entering a segment,
-- a person's first open or click of a campaign's email. Each becomes a `sequence_signal` row in
-- the transaction where it happened; the engine consumes signals as it consumes the event outbox
-- (each exactly once: a signal row is deleted in the transaction that admitted its contact).

-- A published version's trigger, for matching without opening the sealed definition: its kind
-- and the list, segment or campaign it names (ids only).
ALTER TABLE sequence_version ADD COLUMN trigger_kind text NOT NULL DEFAULT 'event'
    CHECK (trigger_kind IN ('event', 'manual', 'list_added', 'segment_entered', 'campaign_opened', 'campaign_clicked'));
ALTER TABLE sequence_version ADD COLUMN trigger_ref uuid;
UPDATE sequence_version SET trigger_kind = CASE WHEN trigger_event_type IS NULL THEN 'manual' ELSE 'event' END;
-- Planned for list triggers, never written: `trigger_kind` / `trigger_ref` say it for every kind.
ALTER TABLE sequence_version DROP COLUMN trigger_list_id;
CREATE INDEX sequence_version_trigger_ref ON sequence_version (trigger_ref, trigger_kind) WHERE trigger_ref IS NOT NULL;

CREATE TABLE sequence_signal (
    id              bigserial PRIMARY KEY,
    organisation_id uuid NOT NULL REFERENCES organisation (id) ON DELETE CASCADE,
    contact_id      uuid NOT NULL REFERENCES contact (id) ON DELETE CASCADE,
    kind            text NOT NULL CHECK (kind IN ('list_added', 'segment_entered', 'campaign_opened', 'campaign_clicked')),
    -- The list, segment or campaign.
    ref_id          uuid NOT NULL,
    -- Segment entries are found per sequence (each keeps its own view of the members).
    sequence_id     uuid REFERENCES sequence (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL
);

-- List additions, from every path that writes memberships (the app, imports, the API, sequences):
-- a member becoming 'subscribed' (inserted so, or confirming a double opt-in, or subscribing
-- again), when a live sequence starts on that list. Statement-level, so an import of a million
-- rows into a list no sequence watches costs one EXISTS per statement's rows, not a trigger call
-- per row.
CREATE FUNCTION sequence_signal_list_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sequence_signal (organisation_id, contact_id, kind, ref_id, created_at)
    SELECT n.organisation_id, n.contact_id, 'list_added', n.list_id, n.updated_at
    FROM new_rows n
    WHERE n.status = 'subscribed'
      AND EXISTS (SELECT 1 FROM sequence_version v JOIN sequence s ON s.current_version_id = v.id
                  WHERE v.trigger_ref = n.list_id AND v.trigger_kind = 'list_added' AND s.status = 'active');
    RETURN NULL;
END
$$;
CREATE TRIGGER list_member_signal_insert AFTER INSERT ON list_member
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sequence_signal_list_insert();

CREATE FUNCTION sequence_signal_list_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sequence_signal (organisation_id, contact_id, kind, ref_id, created_at)
    SELECT n.organisation_id, n.contact_id, 'list_added', n.list_id, n.updated_at
    FROM new_rows n JOIN old_rows o ON o.list_id = n.list_id AND o.contact_id = n.contact_id
    WHERE n.status = 'subscribed' AND o.status <> 'subscribed'
      AND EXISTS (SELECT 1 FROM sequence_version v JOIN sequence s ON s.current_version_id = v.id
                  WHERE v.trigger_ref = n.list_id AND v.trigger_kind = 'list_added' AND s.status = 'active');
    RETURN NULL;
END
$$;
CREATE TRIGGER list_member_signal_update AFTER UPDATE ON list_member
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sequence_signal_list_update();

-- Segment entries: each live sequence started by a segment keeps the members it has seen (ids
-- only). The first look after publication records the members without admitting them; later
-- looks admit the contacts that are new and forget those that left (so leaving and coming back
-- is entering again, subject to the entry rule).
CREATE TABLE sequence_segment_member (
    sequence_id uuid NOT NULL REFERENCES sequence (id) ON DELETE CASCADE,
    segment_id  uuid NOT NULL,
    contact_id  uuid NOT NULL REFERENCES contact (id) ON DELETE CASCADE,
    PRIMARY KEY (sequence_id, segment_id, contact_id)
);
CREATE TABLE sequence_segment_check (
    sequence_id uuid NOT NULL REFERENCES sequence (id) ON DELETE CASCADE,
    segment_id  uuid NOT NULL,
    checked_at  timestamptz NOT NULL,
    PRIMARY KEY (sequence_id, segment_id)
);
