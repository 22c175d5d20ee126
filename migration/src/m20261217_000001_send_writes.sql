-- Rows held by a send worker are found by that worker's lease key (claimed_by), which is set only
-- while a row is 'sending'. The old index was partial on state = 'sending', so the outcome
-- UPDATE (id = any of the batch AND state = 'sending' AND claimed_by = lease) could use it: with
-- statistics taken while nothing was sending the planner expected one row there and hashed every
-- row the worker held (up to slots x batch, 800 by default) for each write of a few outcomes. The
-- outcome write now tests the lease without an index-usable condition, and this index no longer
-- matches its state test, so the batch is found by primary key.
DROP INDEX delivery_claimed;
CREATE INDEX delivery_claimed ON delivery (claimed_by) WHERE claimed_by IS NOT NULL;

-- A received message is its delivery row: 'sent', at accepted_at. Sending wrote a 'received'
-- engagement event as well, one more row (with four indexes and two foreign-key checks) per
-- message on the hottest path; segments now read the delivery rows instead, so those events are
-- redundant copies and go. The index also serves the contact foreign key (erasure sets
-- contact_id to NULL, which scanned every delivery before).
CREATE INDEX delivery_contact ON delivery (contact_id);
DELETE FROM engagement_event WHERE activity = 'received';
ALTER TABLE engagement_event DROP CONSTRAINT engagement_event_activity_check;
ALTER TABLE engagement_event ADD CONSTRAINT engagement_event_activity_check
    CHECK (activity IN ('opened', 'clicked', 'bounced', 'unsubscribed'));
