-- What a CPE told the ACS outside any job: an AutonomousTransferComplete, a
-- DUStateChangeComplete whose CommandKey no job owns, an
-- AutonomousDUStateChangeComplete, a RequestDownload the ACS could not serve.
-- Support desks read these per device; a job's own outcome stays on the job.
-- ``kind`` is the CWMP method (or an ACS-side label), ``detail`` its arguments
-- as the ACS understood them, secrets removed.
CREATE TABLE device_events (
    id         bigserial PRIMARY KEY,
    device_id  text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    at         timestamptz NOT NULL DEFAULT now(),
    kind       text NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    detail     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX device_events_device ON device_events (device_id, id DESC);
