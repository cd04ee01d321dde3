-- Reaching CPEs behind a NAT (TR-111 Part 2): STUN credentials, public UDP
-- bindings, and the last outcome of each connection-request channel.

-- The STUN credential the ACS set on a device (SetParameterValues of
-- STUNUsername and STUNPassword): CPEs read passwords back as "", so this is
-- where the STUN server finds the key of a Binding Request's MESSAGE-INTEGRITY.
CREATE TABLE stun_credentials (
    device_id  text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    username   text NOT NULL UNIQUE,
    password   text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A device's public address as its last authenticated Binding Request with
-- CONNECTION-REQUEST-BINDING came from: where UDP connection requests go. In
-- PostgreSQL, so whichever worker got the keep-alive, every worker can knock.
CREATE TABLE udp_bindings (
    device_id    text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    address      text NOT NULL,
    port         integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    nat_detected boolean NOT NULL,
    seen_at      timestamptz NOT NULL,
    since        timestamptz NOT NULL,  -- this address:port since
    changes      integer NOT NULL DEFAULT 0  -- how often address:port changed
);

-- The last knock on each channel of a device, for operators: which one answers.
CREATE TABLE connection_request_channels (
    device_id text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    channel   text NOT NULL,
    ok        boolean NOT NULL,
    outcome   text NOT NULL,
    reason    text NOT NULL,
    elapsed_s double precision NOT NULL,
    at        timestamptz NOT NULL,
    PRIMARY KEY (device_id, channel)
);
