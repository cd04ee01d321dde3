-- Issue 18 part A.
--
-- A rollback that misses no one: the moment a campaign starts rolling back is
-- kept, so a device whose install finishes after it (a Download in flight at
-- the abort) is sent back too instead of counting as a success.
CREATE TABLE campaign_rollbacks (
    campaign_id bigint PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    started_at  timestamptz NOT NULL DEFAULT now(),
    reason      text NOT NULL
);
