-- The Inform digest (acs/store/sessions.py): the md5 of a periodic Inform's
-- values and the version (xmin, ctid) of the device_parameters row found to
-- hold them all. While the row is that version, the next Inform with the
-- same values need not read its tree (~24 KB of TOAST) nor lock it. Any write
-- of the tree makes a new version, so no writer has to clear this column.
-- In the narrow row every session updates anyway (HOT: no index on it).
ALTER TABLE device_sessions ADD COLUMN inform_seen text;
