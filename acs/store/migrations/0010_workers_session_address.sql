-- Workers (ACS_WORKERS > 1) find the owner of a cookie-less CPE's request by the
-- address of its live session (acs/store/sessions.py live_sessions_at), on the
-- miss path only. Partial: only devices in a session right now are indexed, so
-- the index stays the size of the sessions in flight, not of the fleet.
CREATE INDEX devices_session_remote_idx ON devices (remote_address)
    WHERE session_id IS NOT NULL;
