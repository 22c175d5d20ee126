-- Every delivery row is updated twice by a send (queued -> sending -> sent) and neither update
-- can be HOT (state and claimed_by are indexed), so each one inserts a new entry into every index
-- on the table: at 100,000 messages a campaign, index maintenance was the largest share of the
-- database's CPU. Two indexes paid for nothing:
-- * UNIQUE (organisation_id, id) duplicates the primary key's guarantee; no foreign key uses it.
-- * delivery_state (campaign_id, state) served counts that are now served by narrower indexes:
--   the work left is the due rows (delivery_due) plus the rows held by senders (delivery_claimed),
--   and the per-state totals of a report read the campaign's rows through
--   delivery_campaign_id_contact_id_key as they did before.
DROP INDEX delivery_state;
ALTER TABLE delivery DROP CONSTRAINT delivery_organisation_id_id_key;
