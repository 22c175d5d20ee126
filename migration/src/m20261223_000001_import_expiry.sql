-- Uploads that are never started are purged after a day (issue 18): the maintenance job deletes
-- their sealed chunks and sealed header row and marks the import 'expired', so the import page can
-- say what happened to the file. The import row itself holds no PHI and stays as a record.
ALTER TABLE contact_import DROP CONSTRAINT contact_import_status_check;
ALTER TABLE contact_import ADD CONSTRAINT contact_import_status_check
    CHECK (status IN ('uploading', 'uploaded', 'queued', 'running', 'completed', 'failed', 'cancelled', 'expired'));
-- The purge looks for waiting uploads by age.
CREATE INDEX contact_import_unstarted ON contact_import (created_at) WHERE status IN ('uploading', 'uploaded');
