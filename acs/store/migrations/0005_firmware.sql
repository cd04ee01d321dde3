-- Firmware catalog and staged campaigns (acs/store/firmware.py, acs/store/campaigns.py).

-- How a product's version strings compare (acs/core/versions.py); a product
-- without a row uses the "auto" scheme.
CREATE TABLE firmware_products (
    oui             text NOT NULL,
    product_class   text NOT NULL,
    version_scheme  text NOT NULL DEFAULT 'auto',
    version_pattern text,
    PRIMARY KEY (oui, product_class)
);

-- One installable image: a file of the file server and where it fits.
CREATE TABLE firmware_images (
    id                bigserial PRIMARY KEY,
    -- RESTRICT: a file the catalog offers cannot vanish under a campaign
    file_id           bigint NOT NULL REFERENCES files (id) ON DELETE RESTRICT,
    oui               text NOT NULL,
    product_class     text NOT NULL,
    hardware_versions text[] NOT NULL CHECK (cardinality(hardware_versions) > 0),
    version           text NOT NULL,
    -- {"name", "source": provisioningCode|tag|parameter, "parameter", "values"}; NULL: any
    region            jsonb,
    channel           text NOT NULL DEFAULT 'stable',
    min_version       text,
    allow_downgrade   boolean NOT NULL DEFAULT false,
    release_notes     text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX firmware_images_product_idx ON firmware_images (oui, product_class, channel);

CREATE TABLE campaigns (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    status            text NOT NULL DEFAULT 'draft'
                      CHECK (status IN ('draft', 'running', 'paused', 'completed',
                                        'aborted', 'cancelled')),
    status_reason     text,
    -- a fixed image, or the newest fitting image of a channel for each device
    image_id          bigint REFERENCES firmware_images (id) ON DELETE RESTRICT,
    channel           text,
    CHECK ((image_id IS NULL) <> (channel IS NULL)),
    filter            text NOT NULL DEFAULT '',
    membership        text NOT NULL DEFAULT 'snapshot'
                      CHECK (membership IN ('snapshot', 'continuous')),
    stages            jsonb NOT NULL,
    current_stage     integer NOT NULL DEFAULT 0,
    -- failures already seen by an operator who resumed: {"<stage>": count}
    failure_baseline  jsonb NOT NULL DEFAULT '{}',
    start_at          timestamptz,
    windows           jsonb NOT NULL DEFAULT '[]',
    max_in_flight     integer,
    starts_per_minute integer,
    max_attempts      integer NOT NULL DEFAULT 3,
    retry_backoff_s   double precision NOT NULL DEFAULT 300,
    verify_timeout_s  double precision NOT NULL DEFAULT 3600,
    rollback          boolean NOT NULL DEFAULT false,
    -- knock on pending devices instead of waiting for their periodic Inform
    connection_request boolean NOT NULL DEFAULT false,
    priority          integer NOT NULL DEFAULT 0,
    audience          integer NOT NULL DEFAULT 0,
    created_by        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- One row per device a campaign considered, with its progress.
CREATE TABLE campaign_devices (
    campaign_id     bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    device_id       text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    stage           integer,          -- NULL for devices skipped at admission
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'downloading', 'installing', 'verifying',
                                     'succeeded', 'failed', 'skipped', 'rolled_back')),
    rollback        boolean NOT NULL DEFAULT false,  -- going back to from_version
    image_id        bigint REFERENCES firmware_images (id) ON DELETE SET NULL,
    from_version    text,
    target_version  text,
    task_id         bigint,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    reason          text,
    code            text,             -- the reason as a stable code (acs.core.firmware)
    fault_code      integer,
    started_at      timestamptz,
    finished_at     timestamptz,
    knocked_at      timestamptz,      -- last connection request on the campaign's behalf
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, device_id)
);
-- every session asks "has this device campaign work?": one probe of this index
CREATE INDEX campaign_devices_open_idx ON campaign_devices (device_id)
    WHERE state IN ('pending', 'downloading', 'installing', 'verifying');
-- progress and rate limits: members of a campaign by state, and by start time
CREATE INDEX campaign_devices_state_idx ON campaign_devices (campaign_id, state, stage);
CREATE INDEX campaign_devices_started_idx ON campaign_devices (campaign_id, started_at)
    WHERE started_at IS NOT NULL;
