-- The send queue moves out of the delivery table.
--
-- A send used to update its delivery row twice (queued -> sending at the claim, sending -> sent at
-- the record), and neither update could be HOT: `state` is in the due index's predicate and
-- `claimed_by` is indexed, so each wrote a new entry into every index of the table (five at
-- first). At 100,000 messages the claim and the record were most of the database's work.
--
-- Now a delivery still waiting to be sent has a row in delivery_queue: small, with only the columns
-- the claim needs. The claim sets the queue row's claimed_by (the sender's lease); the record
-- deletes the queue row (or, for a retry or a row handed back, clears claimed_by and sets the next
-- time) and writes the outcome to the delivery row once. No indexed column of delivery changes
-- after its insert, so that write is a HOT update when the page has room: fillfactor 80 keeps it.
-- A delivery is in flight exactly when its queue row has a claimed_by; the state of a delivery
-- row is never 'sending' any more.
CREATE TABLE delivery_queue (
    delivery_id     uuid PRIMARY KEY REFERENCES delivery (id) ON DELETE CASCADE,
    campaign_id     uuid NOT NULL,
    not_before      timestamptz NOT NULL,
    -- The lease (advisory lock key) of the send worker holding the row; NULL while it waits.
    claimed_by      bigint
);
CREATE INDEX delivery_queue_due ON delivery_queue (campaign_id, not_before, delivery_id) WHERE claimed_by IS NULL;
CREATE INDEX delivery_queue_claimed ON delivery_queue (claimed_by, campaign_id) WHERE claimed_by IS NOT NULL;

-- Rows waiting or in flight when this runs keep their place (a held row keeps its holder: if that
-- worker is gone, the reclaim hands it back as before).
INSERT INTO delivery_queue (delivery_id, campaign_id, not_before, claimed_by)
SELECT id, campaign_id, not_before, CASE WHEN state = 'sending' THEN claimed_by END
FROM delivery WHERE state IN ('queued', 'deferred', 'sending');
UPDATE delivery SET state = 'queued', claimed_by = NULL, claimed_at = NULL WHERE state = 'sending';

DROP INDEX delivery_due;
DROP INDEX delivery_claimed;
ALTER TABLE delivery DROP COLUMN claimed_by, DROP COLUMN claimed_at;
ALTER TABLE delivery SET (fillfactor = 80);
