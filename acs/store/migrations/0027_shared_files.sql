-- Files every ACS host reaches (issue 21 item 3), used with ACS_FILE_STORE=postgres.
--
-- The bytes of a catalog file or a CPE's backup, in chunks of about 1 MiB
-- (acs/store/blobs.py). A chunk belongs to its row and goes with it
-- (ON DELETE CASCADE): deleting a file, a backup, retention or a device's
-- deletion remove the bytes in the same transaction as the row, on every host
-- at once. Rows and chunks are written in one transaction, so a refused or
-- failed upload leaves neither.
CREATE TABLE file_chunks (
    file_id bigint  NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    seq     integer NOT NULL CHECK (seq >= 0),
    data    bytea   NOT NULL,
    PRIMARY KEY (file_id, seq)
);
-- firmware images are compressed already: pglz would spend CPU for nothing
ALTER TABLE file_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE backup_chunks (
    backup_id bigint  NOT NULL REFERENCES device_backups (id) ON DELETE CASCADE,
    seq       integer NOT NULL CHECK (seq >= 0),
    data      bytea   NOT NULL,
    PRIMARY KEY (backup_id, seq)
);
