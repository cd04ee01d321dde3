-- Initial schema of the ACS store.
-- Hot fields touched by every session are columns; the parameter tree is one
-- JSONB document per device (see acs/store/devices.py for its entry format).

CREATE TABLE devices (
    id                     text PRIMARY KEY,
    oui                    text NOT NULL,
    product_class          text NOT NULL,
    serial_number          text NOT NULL,
    manufacturer           text NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    last_inform            timestamptz,
    last_boot              timestamptz,
    last_bootstrap         timestamptz,
    last_events            text[] NOT NULL DEFAULT '{}',
    remote_address         text,
    connection_request_url text,
    software_version       text,
    hardware_version       text,
    provisioning_code      text,
    cwmp_version           text,
    tags                   text[] NOT NULL DEFAULT '{}',
    -- the device session lock: one CWMP session per device across processes
    session_id             text,
    session_expires_at     timestamptz,
    parameter_count        integer NOT NULL DEFAULT 0
);

CREATE INDEX devices_product_class_idx ON devices (product_class);
CREATE INDEX devices_software_version_idx ON devices (software_version);
CREATE INDEX devices_last_inform_idx ON devices (last_inform);
CREATE INDEX devices_tags_idx ON devices USING gin (tags);

CREATE TABLE device_parameters (
    device_id  text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    tree       jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- jsonb_path_ops: smaller and faster than the default opclass, and filters
-- on parameter values are containment queries (tree @> '{"P": {"v": "x"}}').
CREATE INDEX device_parameters_tree_idx ON device_parameters USING gin (tree jsonb_path_ops);

-- lz4 compresses a parameter tree about as well as pglz at a fraction of the
-- CPU; servers built without lz4 keep the default (pglz).
DO $$
BEGIN
    ALTER TABLE device_parameters ALTER COLUMN tree SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    NULL;
END
$$;

CREATE TABLE tasks (
    id           bigserial PRIMARY KEY,
    device_id    text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    name         text NOT NULL,
    args         jsonb NOT NULL DEFAULT '{}',
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'done', 'fault', 'expired', 'cancelled')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    not_before   timestamptz,
    expires_at   timestamptz,
    unique_key   text,
    attempts     integer NOT NULL DEFAULT 0,
    session_id   text,
    started_at   timestamptz,
    finished_at  timestamptz,
    result       jsonb,
    fault_code   integer,
    fault_string text,
    command_key  text
);

CREATE INDEX tasks_open_idx ON tasks (device_id, id) WHERE status IN ('pending', 'running');
CREATE UNIQUE INDEX tasks_unique_pending_idx ON tasks (device_id, unique_key)
    WHERE status = 'pending' AND unique_key IS NOT NULL;

CREATE TABLE cpe_credentials (
    username   text PRIMARY KEY,
    ha1        text NOT NULL,  -- hex MD5(username:realm:password), RFC 7616 HA1
    realm      text NOT NULL,
    -- no foreign key: credentials are usually provisioned before the CPE's
    -- first Inform creates its device row
    device_id  text,
    created_at timestamptz NOT NULL DEFAULT now()
);
