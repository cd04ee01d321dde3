-- Bulk jobs: one task for every device a filter matched (acs/store/bulk_jobs.py).

CREATE TABLE bulk_jobs (
    id                 bigserial PRIMARY KEY,
    name               text NOT NULL,
    task_name          text NOT NULL,
    task_args          jsonb NOT NULL DEFAULT '{}',
    filter             text NOT NULL,
    rate_per_minute    integer NOT NULL CHECK (rate_per_minute > 0),
    connection_request boolean NOT NULL DEFAULT false,
    expiry_s           integer CHECK (expiry_s > 0),  -- each task expires this long after queuing
    status             text NOT NULL DEFAULT 'running'
                       CHECK (status IN ('running', 'paused', 'cancelled', 'completed')),
    reason             text,
    total              integer NOT NULL DEFAULT 0,    -- devices in the snapshot
    queued             integer NOT NULL DEFAULT 0,    -- of them, queued so far
    -- the rate limit's origin (acs/core/bulk.py): tokens earned since then,
    -- minus queued, may be queued now; it only moves forward
    rate_epoch         timestamptz NOT NULL DEFAULT now(),
    created_by         text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    finished_at        timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
-- the tick looks for jobs that still queue or wait for their tasks
CREATE INDEX bulk_jobs_open_idx ON bulk_jobs (id) WHERE status IN ('running', 'paused');

-- The devices matched at creation; task_id and queued_at once their task is queued.
CREATE TABLE bulk_job_devices (
    bulk_id     bigint NOT NULL REFERENCES bulk_jobs (id) ON DELETE CASCADE,
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    -- no foreign key: a task is only ever deleted with its device, which takes
    -- this row along, and a key would cost every task deletion a lookup here
    task_id     bigint,
    queued_at   timestamptz,
    knocked_at  timestamptz,
    knock_error text,            -- why the connection request failed; NULL when it worked
    PRIMARY KEY (bulk_id, device_id)
);
-- the next devices to queue, in device id order
CREATE INDEX bulk_job_devices_waiting_idx ON bulk_job_devices (bulk_id, device_id)
    WHERE queued_at IS NULL;
-- deleting a device finds its rows here instead of scanning every job
CREATE INDEX bulk_job_devices_device_idx ON bulk_job_devices (device_id);
