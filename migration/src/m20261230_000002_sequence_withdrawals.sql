-- A withdrawal of consent or a suppression (unsubscribe from everything, hard bounce, complaint,
-- a manual entry) ends the contact's enrolments in sequences that send for that purpose at once,
-- not at their next send step: a patient who said stop is not kept waiting in a reminder flow,
-- notified about to staff or shown as "active". From every path that writes consent or
-- suppressions (the app, imports, the API, tracking, bounces), as `sequence_signal` rows the
-- engine consumes exactly once (issue 22). Only for contacts with an active enrolment, so an
-- import of a million withdrawals for people in no sequence writes nothing.
ALTER TABLE sequence_signal DROP CONSTRAINT sequence_signal_kind_check;
ALTER TABLE sequence_signal ADD CONSTRAINT sequence_signal_kind_check
    CHECK (kind IN ('list_added', 'segment_entered', 'campaign_opened', 'campaign_clicked', 'consent_withdrawn', 'suppressed'));
-- A withdrawal names a purpose, a suppression nothing: their ref_id is NULL.
ALTER TABLE sequence_signal ALTER COLUMN ref_id DROP NOT NULL;
ALTER TABLE sequence_signal ADD COLUMN purpose text
    CHECK (purpose IS NULL OR purpose IN ('marketing', 'care_communications', 'transactional'));

CREATE FUNCTION sequence_signal_consent_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sequence_signal (organisation_id, contact_id, kind, purpose, created_at)
    SELECT n.organisation_id, n.contact_id, 'consent_withdrawn', n.purpose, n.updated_at
    FROM new_rows n
    WHERE NOT n.granted
      AND EXISTS (SELECT 1 FROM enrolment e WHERE e.contact_id = n.contact_id AND e.state = 'active');
    RETURN NULL;
END
$$;
CREATE TRIGGER contact_consent_signal_insert AFTER INSERT ON contact_consent
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sequence_signal_consent_insert();

CREATE FUNCTION sequence_signal_consent_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sequence_signal (organisation_id, contact_id, kind, purpose, created_at)
    SELECT n.organisation_id, n.contact_id, 'consent_withdrawn', n.purpose, n.updated_at
    FROM new_rows n JOIN old_rows o ON o.contact_id = n.contact_id AND o.purpose = n.purpose
    WHERE NOT n.granted AND o.granted
      AND EXISTS (SELECT 1 FROM enrolment e WHERE e.contact_id = n.contact_id AND e.state = 'active');
    RETURN NULL;
END
$$;
CREATE TRIGGER contact_consent_signal_update AFTER UPDATE ON contact_consent
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sequence_signal_consent_update();

-- A suppression names an address (a keyed hash): every contact of the organisation with it.
CREATE FUNCTION sequence_signal_suppression_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sequence_signal (organisation_id, contact_id, kind, created_at)
    SELECT c.organisation_id, c.id, 'suppressed', n.created_at
    FROM new_rows n JOIN contact c ON c.organisation_id = n.organisation_id AND c.email_bidx = n.email_bidx
    WHERE EXISTS (SELECT 1 FROM enrolment e WHERE e.contact_id = c.id AND e.state = 'active');
    RETURN NULL;
END
$$;
CREATE TRIGGER suppression_signal_insert AFTER INSERT ON suppression
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION sequence_signal_suppression_insert();
