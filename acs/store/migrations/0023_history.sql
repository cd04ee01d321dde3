-- The fleet's history (issue 20 item 7): per 5-minute bucket, how many CWMP
-- sessions, BOOT Informs, CPE faults, faulted jobs and connection requests
-- the ACS served, and how many devices were online. Each worker (each host)
-- adds its own counts to the bucket, so the row is the cluster's total; the
-- online-devices gauge is set, not added. Kept ACS_HISTORY_KEEP_DAYS.
CREATE TABLE history (
    metric  text NOT NULL,
    bucket  timestamptz NOT NULL,
    value   bigint NOT NULL,
    PRIMARY KEY (metric, bucket)
);
CREATE INDEX history_bucket_idx ON history (bucket);
