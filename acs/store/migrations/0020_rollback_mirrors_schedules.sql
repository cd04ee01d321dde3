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

-- Region mirrors: download URLs of an image per region, each a base URL for
-- the devices carrying a tag or matching a filter; the first that fits a
-- device is its URL, chosen when its Download is sent. No mirror fits: the
-- ACS's own file server.
CREATE TABLE firmware_image_mirrors (
    image_id  bigint NOT NULL REFERENCES firmware_images (id) ON DELETE CASCADE,
    position  integer NOT NULL CHECK (position >= 0),
    base_url  text NOT NULL,
    tag       text,
    filter    text,
    PRIMARY KEY (image_id, position),
    CHECK ((tag IS NULL) <> (filter IS NULL))
);

-- Scheduled bulk jobs: a start time and maintenance windows (as campaigns
-- have, acs/core/windows.py). The rate epoch of a job that starts later is
-- its start time, so the rate counts from then.
ALTER TABLE bulk_jobs
    ADD COLUMN start_at timestamptz,
    ADD COLUMN windows  jsonb NOT NULL DEFAULT '[]'::jsonb;
