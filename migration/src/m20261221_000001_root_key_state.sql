-- The root key new keys are wrapped under (its public fingerprint, as in wrapped_key.root_key_id).
--
-- One row. A process inserts a key only in a statement that reads this row FOR SHARE and checks
-- that the key was wrapped under the root key named here; `server admin rotate-root-key` takes the
-- row FOR UPDATE, re-wraps every live key and names the new root key, in one transaction. So no
-- key can be wrapped under a root key that a rotation is retiring, however many processes run.
-- The row is written by the first process that starts after this migration: from the audit key's
-- root on an existing database, from that process's root key on an empty one.
CREATE TABLE root_key_state (
    id          smallint PRIMARY KEY CHECK (id = 1),
    root_key_id text NOT NULL CHECK (root_key_id ~ '^[0-9a-f]{16}$'),
    updated_at  timestamptz NOT NULL
);
