-- Running it in production: CWMP session logs, the API audit log, webhooks
-- with their delivery outbox, and the indexes retention prunes by.

-- The last sessions of each device with every SOAP message in and out, secrets
-- masked (acs/core/session_log.py). One row per session, written once when
-- the session ends, so a periodic session costs one INSERT.
CREATE TABLE session_logs (
    id             bigserial PRIMARY KEY,
    device_id      text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    -- the session cookie of a session that is over: it only correlates the
    -- row with the structured log lines (session=...)
    session_key    text NOT NULL,
    started_at     timestamptz NOT NULL,
    ended_at       timestamptz NOT NULL,
    outcome        text NOT NULL CHECK (outcome IN ('completed', 'abandoned')),
    reason         text,
    events         text[] NOT NULL DEFAULT '{}',
    remote_address text,
    message_count  integer NOT NULL,
    stored_bytes   integer NOT NULL,
    truncated      boolean NOT NULL DEFAULT false,
    -- [{"direction", "at", "status", "rpc", "size", "body", "truncated"}]
    messages       jsonb NOT NULL
);
-- a device's sessions newest first, and the per-device bound on insert
CREATE INDEX session_logs_device_idx ON session_logs (device_id, id);
CREATE INDEX session_logs_ended_idx ON session_logs (ended_at);

DO $$
BEGIN
    ALTER TABLE session_logs ALTER COLUMN messages SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    NULL;
END
$$;

-- Who did what to which object through the operator API (one row per
-- non-GET request of an authenticated token).
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,          -- the API token's name
    role        text NOT NULL,
    method      text NOT NULL,
    route       text NOT NULL,          -- the route template, e.g. /api/v1/tasks/{task_id}
    action      text NOT NULL,          -- e.g. "task queued", "token revoked"
    object_type text,
    object_id   text,
    status      integer NOT NULL,       -- the HTTP status of the answer
    remote      text,
    detail      jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, id);
CREATE INDEX audit_log_object_idx ON audit_log (object_id, id);

-- Event hooks: POST a signed JSON document to a URL when something happens.
CREATE TABLE webhooks (
    id          bigserial PRIMARY KEY,
    url         text NOT NULL,
    -- kept in clear: the sender needs it for every HMAC; the API never shows it again
    secret      text NOT NULL,
    events      text[] NOT NULL CHECK (cardinality(events) > 0),
    enabled     boolean NOT NULL DEFAULT true,
    created_by  text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per (event, hook), written in the transaction of the change that
-- raised the event: a crash loses neither. The sender claims due rows,
-- POSTs them and records the outcome; failures come back with backoff.
CREATE TABLE webhook_outbox (
    id              bigserial PRIMARY KEY,
    webhook_id      bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        uuid NOT NULL,      -- the same for every hook of one event
    event_type      text NOT NULL,
    payload         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'abandoned')),
    attempts        integer NOT NULL DEFAULT 0,
    -- also the claim lease: a claimed row is pushed into the future, so a
    -- sender that dies mid-delivery hands it to the next one
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
-- the sender's claim: per hook, the due rows in order
CREATE INDEX webhook_outbox_due_idx ON webhook_outbox (webhook_id, next_attempt_at, id)
    WHERE state = 'pending';
CREATE INDEX webhook_outbox_finished_idx ON webhook_outbox (finished_at)
    WHERE state IN ('delivered', 'abandoned');

-- Retention of finished jobs prunes by finish time.
CREATE INDEX tasks_finished_idx ON tasks (finished_at)
    WHERE status IN ('done', 'fault', 'expired', 'cancelled');
