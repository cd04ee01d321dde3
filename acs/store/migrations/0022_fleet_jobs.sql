-- The fleet-wide job views (issue 20): an operator dismisses a fault once it is
-- understood, so the open-faults list shows what still needs somebody; the job
-- itself keeps its status and fault. The partial index serves that list and
-- its groups without touching the (much larger) set of finished jobs.
ALTER TABLE tasks ADD COLUMN dismissed_at timestamptz;
ALTER TABLE tasks ADD COLUMN dismissed_by text;
CREATE INDEX tasks_open_fault_idx ON tasks (fault_code, id DESC)
    WHERE status = 'fault' AND dismissed_at IS NULL;
CREATE INDEX tasks_status_idx ON tasks (status, id DESC);
