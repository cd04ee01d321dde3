-- Live updates for the web UI (issue 20 item 6): the writes themselves say
-- what changed, on channel acs_live, inside the writing transaction. A NOTIFY
-- is delivered at commit and dropped at rollback, so a browser never hears of
-- a change that did not happen, and every host's listener hears every write
-- whichever worker or host made it. Payloads are "kind:id"; each process
-- coalesces them per page topic (acs/core/live.py) before any browser hears.
-- PostgreSQL folds identical payloads of one transaction into one, so a
-- campaign tick moving a hundred devices sends one "campaign:N".
--
-- Every trigger has a WHEN clause: an UPDATE that changes nothing a page
-- shows (a task's result written, a lease renewed) never enters PL/pgSQL.

CREATE FUNCTION acs_live_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- TG_ARGV[0]: the kind; TG_ARGV[1]: the column naming the object
    PERFORM pg_notify('acs_live', TG_ARGV[0] || ':' || (to_jsonb(NEW) ->> TG_ARGV[1]));
    RETURN NULL;
END
$$;

-- a session's end: the device's lease is released (in device_sessions since
-- migration 0024 moved presence and the lease out of devices)
CREATE TRIGGER device_sessions_live_session_end AFTER UPDATE OF session_id ON device_sessions
    FOR EACH ROW WHEN (OLD.session_id IS NOT NULL AND NEW.session_id IS NULL)
    EXECUTE FUNCTION acs_live_notify('device', 'device_id');
-- first contact
CREATE TRIGGER devices_live_registered AFTER INSERT ON devices
    FOR EACH ROW EXECUTE FUNCTION acs_live_notify('device', 'id');

-- a job queued, and every change of its status (a fault included)
CREATE TRIGGER tasks_live_queued AFTER INSERT ON tasks
    FOR EACH ROW EXECUTE FUNCTION acs_live_notify('task', 'device_id');
CREATE TRIGGER tasks_live_status AFTER UPDATE OF status ON tasks
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION acs_live_notify('task', 'device_id');

-- a campaign's state, and each device's progress through it
CREATE TRIGGER campaigns_live AFTER INSERT OR UPDATE ON campaigns
    FOR EACH ROW EXECUTE FUNCTION acs_live_notify('campaign', 'id');
CREATE TRIGGER campaign_devices_live AFTER UPDATE OF state ON campaign_devices
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION acs_live_notify('campaign', 'campaign_id');

-- a bulk job's state and its queueing (its jobs' outcomes come as task:...)
CREATE TRIGGER bulk_jobs_live AFTER INSERT OR UPDATE ON bulk_jobs
    FOR EACH ROW EXECUTE FUNCTION acs_live_notify('bulk', 'id');
