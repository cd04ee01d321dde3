-- Operators of the web UI: a username, an Argon2id password hash (the hash
-- string carries its own salt and cost, so costs can rise without a
-- migration) and one of the API token roles.
CREATE TABLE users (
    username            text PRIMARY KEY CHECK (username ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    password_hash       text NOT NULL,
    role                text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    created_at          timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    last_login_at       timestamptz
);

-- Signed-in browsers. The cookie holds 256 random bits and only their SHA-256
-- is kept, as for API tokens. In PostgreSQL rather than in memory so that
-- every ACS process behind a load balancer knows the session, and so that
-- deleting a user or changing a password ends their sessions at once.
CREATE TABLE ui_sessions (
    id_sha256    text PRIMARY KEY,
    username     text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    -- the synchronizer token every state-changing request must echo
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);

CREATE INDEX ui_sessions_username_idx ON ui_sessions (username);
CREATE INDEX ui_sessions_expires_idx ON ui_sessions (expires_at);

-- The overview page counts faulted jobs and lists the latest; without this a
-- large task history would be scanned on every visit.
CREATE INDEX IF NOT EXISTS tasks_fault_idx ON tasks (finished_at DESC) WHERE status = 'fault';
