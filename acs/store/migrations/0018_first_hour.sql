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
