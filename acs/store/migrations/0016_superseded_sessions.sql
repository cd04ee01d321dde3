-- A session superseded by a new Inform of its device (the CPE restarted
-- mid-session, issue 16 item 8) gives its job in flight back without spending
-- an attempt. This counts those free returns, so that a job whose RPC itself
-- takes the CPE down cannot come back for free forever: past
-- ACS_MAX_TASK_ATTEMPTS of them a restart costs an attempt like a timeout.
ALTER TABLE tasks ADD COLUMN restarts integer NOT NULL DEFAULT 0;
