-- Config backup and restore (issue 17 item 1).
--
-- device_backups: the files a device uploaded (vendor configuration files,
-- vendor logs), one row per file; the bytes live under data_dir/backups with
-- the row's storage_name. A row exists only once its file is on disk (the
-- upload renames its temporary file into place inside the inserting
-- transaction), so a refused or failed upload leaves neither.
CREATE TABLE device_backups (
    id               bigserial PRIMARY KEY,
    device_id        text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    -- the upload job; kept when retention prunes the job
    task_id          bigint REFERENCES tasks (id) ON DELETE SET NULL,
    file_type        text NOT NULL,
    size             bigint NOT NULL,
    sha256           text NOT NULL,
    -- the firmware the device ran when it uploaded the file
    firmware_version text,
    storage_name     text NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_backups_device_idx ON device_backups (device_id, created_at DESC, id DESC);
CREATE INDEX device_backups_created_idx ON device_backups (created_at);

-- transfer_grants: the per-job URL and credential of an Upload (the CPE puts
-- its file) or of a restore's Download (the CPE gets a backup). Only the HA1
-- of the password is kept; the password itself exists only in the RPC. The
-- credential speaks for one device and one job: another device's, or the
-- shared file-server account, is refused.
CREATE TABLE transfer_grants (
    token      text PRIMARY KEY,
    task_id    bigint NOT NULL UNIQUE REFERENCES tasks (id) ON DELETE CASCADE,
    device_id  text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    direction  text NOT NULL CHECK (direction IN ('upload', 'download')),
    username   text NOT NULL UNIQUE,
    ha1        text NOT NULL,
    backup_id  bigint REFERENCES device_backups (id) ON DELETE CASCADE,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((direction = 'download') = (backup_id IS NOT NULL))
);

-- when a policy's backup (spec.backup) last queued an upload for a device:
-- its "every" interval counts from here
CREATE TABLE policy_backup_runs (
    policy_id bigint NOT NULL REFERENCES policies (id) ON DELETE CASCADE,
    device_id text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    last_run  timestamptz NOT NULL,
    PRIMARY KEY (policy_id, device_id)
);
