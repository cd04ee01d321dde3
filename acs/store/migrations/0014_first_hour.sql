-- A newcomer's first hour (issue 14).
--
-- Campaigns knock on their devices unless told not to: the shipped
-- periodic-inform policy makes devices Inform hourly, so a campaign waiting
-- for Informs looks stuck. The API and the UI default to true; so does a row
-- written without the column.
ALTER TABLE campaigns ALTER COLUMN connection_request SET DEFAULT true;

-- A bulk job's device whose task could never run (a FOTA-only terminal given
-- a CWMP task) is skipped when its turn comes, with the reason, instead of
-- being queued a task that would wait forever.
ALTER TABLE bulk_job_devices ADD COLUMN skip_reason text;

-- A device that answered a bulk job's connection request with 503 (a CPE
-- limiting how many it accepts, TR-069 3.2.2) is up, only busy: it is knocked
-- again from this time while its task waits, instead of waiting for its next
-- periodic Inform (an hour away under the shipped policy).
ALTER TABLE bulk_job_devices ADD COLUMN knock_again_at timestamptz;
CREATE INDEX bulk_job_devices_knock_again_idx ON bulk_job_devices (bulk_id, knock_again_at)
    WHERE knock_again_at IS NOT NULL;
