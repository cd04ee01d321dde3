-- CPE authentication state every worker must agree on (acs/store/cpe_auth_state.py).
--
-- Digest nonces are still signed, so a nonce the ACS never issued is refused
-- without a query; what the signature cannot say is whether a nonce count was
-- already used. A row is written only once a response digest has verified, so
-- an unauthenticated client cannot fill this table; it keeps the highest nonce
-- count seen, and a request must bring a higher one (RFC 7616 3.4). Past its
-- expiry a nonce is refused as stale by its own time stamp, so the row is
-- useless and pruned.
CREATE TABLE cpe_digest_nonces (
    nonce      text PRIMARY KEY,
    nc         bigint NOT NULL,
    expires_at timestamptz NOT NULL
);

CREATE INDEX cpe_digest_nonces_expires_idx ON cpe_digest_nonces (expires_at);

-- Failed CPE passwords per username ('user:<name>') and per client address
-- ('addr:<ip>'). In PostgreSQL so that a guesser spreading attempts over the
-- workers of `acs serve --workers N` meets one count, not N.
CREATE TABLE cpe_auth_failures (
    key             text PRIMARY KEY,
    failures        integer NOT NULL,
    last_failure_at timestamptz NOT NULL,
    blocked_until   timestamptz
);

CREATE INDEX cpe_auth_failures_last_idx ON cpe_auth_failures (last_failure_at);
