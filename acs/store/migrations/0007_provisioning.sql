-- Provisioning policies (acs/core/policies.py, acs/store/policies.py).

CREATE TABLE policies (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    description  text NOT NULL DEFAULT '',
    enabled      boolean NOT NULL DEFAULT true,
    priority     integer NOT NULL DEFAULT 0,
    precondition text NOT NULL DEFAULT '',
    events       text[] NOT NULL DEFAULT '{}',  -- empty: every session
    windows      jsonb NOT NULL DEFAULT '[]',
    -- the desired state as the API takes it: parameters, objects, attributes,
    -- refresh, tags, download
    spec         jsonb NOT NULL,
    version      integer NOT NULL DEFAULT 1,
    created_by   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Values one device must have whatever the policies say.
CREATE TABLE device_overrides (
    device_id  text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    path       text NOT NULL,
    value      text NOT NULL,
    xsd_type   text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, path)
);

-- The last outcome of each policy on each device: what it changed, its faults
-- (a parameter the device lacks, a value refused, a loop) and the conflicts it lost.
CREATE TABLE policy_results (
    device_id      text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    policy_id      bigint NOT NULL REFERENCES policies (id) ON DELETE CASCADE,
    policy_version integer NOT NULL,
    applied_at     timestamptz NOT NULL,
    changes        integer NOT NULL DEFAULT 0,
    faults         jsonb NOT NULL DEFAULT '[]',
    conflicts      jsonb NOT NULL DEFAULT '[]',
    file_sha256    text,  -- the version of the policy's file last queued for download
    PRIMARY KEY (device_id, policy_id)
);
CREATE INDEX policy_results_faulty_idx ON policy_results (policy_id)
    WHERE faults <> '[]'::jsonb;

-- Which policy set which value: why a parameter has its value.
CREATE TABLE parameter_sources (
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    path        text NOT NULL,
    policy_id   bigint,  -- NULL: a per-device override
    policy_name text NOT NULL,
    value       text NOT NULL,
    set_at      timestamptz NOT NULL,
    PRIMARY KEY (device_id, path)
);

-- Secrets of this ACS installation (per-device secrets in templates derive from them).
CREATE TABLE acs_keys (
    name       text PRIMARY KEY,
    value      bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
