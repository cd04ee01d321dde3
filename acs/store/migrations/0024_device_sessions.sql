-- A device's presence and session lease in a narrow row of their own.
--
-- Every session used to update the device row twice: the Inform set
-- last_inform and the lease, the end released the lease. last_inform is
-- indexed, so the first update was never HOT: PostgreSQL wrote a new copy of
-- the wide row (arrays, versions, URLs) and an entry into each of its seven
-- indexes, the GIN index of tags among them, every session. Here the columns
-- that move each session live in a row of four columns: the Inform's update
-- writes that narrow row and two index entries (its key and last_inform), the
-- release touches no indexed column and updates HOT, helped by the free space
-- fillfactor leaves on each page. The device row is written only when
-- something in it changed (a new version, other events, a new address).
CREATE TABLE device_sessions (
    device_id          text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    last_inform        timestamptz,
    -- the device session lock: one CWMP session per device across processes
    session_id         text,
    session_expires_at timestamptz
) WITH (fillfactor = 70);

INSERT INTO device_sessions (device_id, last_inform, session_id, session_expires_at)
SELECT id, last_inform, session_id, session_expires_at FROM devices;

CREATE INDEX device_sessions_last_inform_idx ON device_sessions (last_inform);

-- every device has its row, whoever creates it (a CWMP Inform, a FOTA check-in)
CREATE FUNCTION device_sessions_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO device_sessions (device_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER devices_sessions_row AFTER INSERT ON devices
    FOR EACH ROW EXECUTE FUNCTION device_sessions_add();

-- The health watch counts Informs where last_inform moves, now this table.
-- The trigger fires at the end of the Inform's statement, which has written
-- the device row's last_events by then.
DROP TRIGGER devices_health_watch ON devices;
CREATE OR REPLACE FUNCTION health_watch_inform() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    events text[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM health_watch
                   WHERE device_id = NEW.device_id AND verdict IN ('watching', 'soaking')) THEN
        RETURN NULL;
    END IF;
    SELECT last_events INTO events FROM devices WHERE id = NEW.device_id;
    UPDATE health_watch
    SET informs = informs + 1,
        last_heard = NEW.last_inform,
        boots = CASE WHEN '1 BOOT' = ANY (events) AND jsonb_array_length(boots) < 50
                     THEN boots || jsonb_build_array(to_jsonb(events)) ELSE boots END
    WHERE device_id = NEW.device_id AND verdict IN ('watching', 'soaking');
    RETURN NULL;
END
$$;
CREATE TRIGGER device_sessions_health_watch AFTER UPDATE OF last_inform ON device_sessions
    FOR EACH ROW WHEN (NEW.last_inform IS DISTINCT FROM OLD.last_inform)
    EXECUTE FUNCTION health_watch_inform();

ALTER TABLE devices
    DROP COLUMN last_inform,
    DROP COLUMN session_id,
    DROP COLUMN session_expires_at;
