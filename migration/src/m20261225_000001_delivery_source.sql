-- Every delivery names its source: what it was created for. The sending pipeline (composition,
-- transport, outcome, the queue) is the same for every source; a source adds rows, not a pipeline.
-- Campaigns are the only source today; sequence steps and API messages come next, each adding its
-- value here together with the column that points at its row.
--
-- A NOT NULL column with a constant default is added without rewriting either table.
ALTER TABLE delivery ADD COLUMN source text NOT NULL DEFAULT 'campaign' CHECK (source IN ('campaign'));
ALTER TABLE delivery_queue ADD COLUMN source text NOT NULL DEFAULT 'campaign' CHECK (source IN ('campaign'));
