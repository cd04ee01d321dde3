-- A device's bootstrap is owed until the policies of its bootstrap session
-- have run to their end. A session cut after discovery but before the
-- policies' SetParameterValues was answered (a CPE that lost power, a storm's
-- timeouts) left the device known and discovered, its 0 BOOTSTRAP acknowledged
-- by the InformResponse, and the shipped policies never applied: no periodic
-- Inform, no connection-request credentials the ACS knows, so every later
-- knock failed on its signature. While this is true, each session counts as a
-- bootstrap for the policies (acs.core.policies.session_events).
--
-- Not indexed, in the narrow row the Inform writes anyway: setting it again
-- to the same value keeps the update HOT.
ALTER TABLE device_sessions ADD COLUMN bootstrap_owed boolean NOT NULL DEFAULT false;

-- a new device owes its bootstrap; existing devices keep false (their
-- bootstraps ran before this flag existed, as far as anyone can tell)
CREATE OR REPLACE FUNCTION device_sessions_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO device_sessions (device_id, bootstrap_owed) VALUES (NEW.id, true)
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
