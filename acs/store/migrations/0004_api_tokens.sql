-- Operator API tokens. Only a SHA-256 of each token is kept: tokens are 256
-- random bits, so a fast hash is enough and a leaked table yields nothing usable.
CREATE TABLE api_tokens (
    name         text PRIMARY KEY,
    token_sha256 text NOT NULL UNIQUE,
    role         text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

-- What the ACS needs to knock on a device: the CPE hides passwords in
-- GetParameterValues, so the credentials the ACS set (or an operator gave)
-- are kept here; absent, the values from the stored tree are used.
CREATE TABLE connection_request_credentials (
    device_id  text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    username   text NOT NULL,
    password   text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Download/Upload jobs whose TransferComplete is still due.
CREATE INDEX tasks_awaiting_transfer_idx ON tasks (started_at)
    WHERE status = 'running' AND session_id IS NULL;
