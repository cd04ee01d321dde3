-- Several ACS hosts on one database (issue 21): periodic work runs on one host
-- at a time. One row per kind of periodic work; the host holding it renews it
-- by database time (now()), never its own clock, and another host takes it
-- over once expires_at has passed (the holder died or lost the database).
-- A tick runs inside a transaction that holds this row locked (FOR UPDATE) and
-- checks the holder, so two hosts that both believe they lead cannot run the
-- same tick at once, and last_run_at keeps a handover from running it twice
-- within one interval.
CREATE TABLE cluster_leases (
    name         text PRIMARY KEY,
    holder       text,          -- the host name, for people (metrics, /readyz)
    holder_id    uuid,          -- one running process: a restarted host is a new holder
    expires_at   timestamptz NOT NULL DEFAULT '-infinity',
    since        timestamptz,   -- when the current holder took it
    last_run_at  timestamptz,   -- the last tick run under it, by anyone
    runs         bigint NOT NULL DEFAULT 0
);

-- Which host owns a CWMP session, and how other hosts reach it: a session id
-- starts with its host's id (acs/web/relay.py); each host registers here the
-- TCP address of its relay listener and refreshes seen_at with its leases.
CREATE TABLE cluster_hosts (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    relay_url   text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now()
);

-- Nonces of host-to-host relay requests seen within the signature window: a
-- request replayed to any worker of any host is refused. Pruned as they age.
CREATE TABLE cluster_relay_nonces (
    nonce    text PRIMARY KEY,
    seen_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cluster_relay_nonces_seen_idx ON cluster_relay_nonces (seen_at);
