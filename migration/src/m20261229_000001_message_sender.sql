-- One-recipient messages (API messages, sequence emails) are sent by sender loops that claim due
-- delivery-queue rows in batches; the job per message ('api-message' queue) is gone. Jobs of that
-- queue left by an earlier version would wait for ever for a worker: the queue rows they pointed
-- at are claimed by the loops, so the jobs are removed. apalis' schema may not exist yet (a fresh
-- database gets it after our migrations).
DO $$
BEGIN
    IF to_regclass('apalis.jobs') IS NOT NULL THEN
        DELETE FROM apalis.jobs WHERE job_type = 'api-message' AND status IN ('Pending', 'Queued', 'Failed');
    END IF;
END
$$;
