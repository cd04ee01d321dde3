-- The Inform digest (acs/store/sessions.py): the md5 of a periodic Inform's
-- values and the version (xmin, ctid) of the device_parameters row found to
-- hold them all. While the row is that version, the next Inform with the
-- same values need not read its tree (~24 KB of TOAST) nor lock it. Any write
-- of the tree makes a new version, so no writer has to clear this column.
-- In the narrow row every session updates anyway (HOT: no index on it).
ALTER TABLE device_sessions ADD COLUMN inform_seen text;

-- Digest nonce counts kept by the process that first used the nonce
-- (acs/web/cpe_auth_state.py): its first count is recorded here with that
-- process's id, and the later ones only in that process's memory, with no
-- statement and no commit per request. No other process may advance such a
-- row (it would not know the counts used since): it refuses the nonce as
-- stale, and the CPE answers a fresh challenge. A restarted process has a new
-- id, so what its memory lost is refused the same way.
ALTER TABLE cpe_digest_nonces ADD COLUMN holder text;
