-- Health soak after a campaign install (acs/core/health.py, acs/store/health.py,
-- acs/services/soak.py): what each campaign watches, each watched device, and
-- every gate decision taken on health.

-- A campaign's health definition (the API's "health" object, as given).
CREATE TABLE campaign_health (
    campaign_id  bigint PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    spec         jsonb NOT NULL,
    -- unhealthy devices per stage an operator acknowledged by resuming: {"<stage>": n}
    acknowledged jsonb NOT NULL DEFAULT '{}',
    -- the audience was put under watch at the start (baseline and control group)
    watched      boolean NOT NULL DEFAULT false
);

-- One row per device a campaign watches: before its upgrade (its own baseline;
-- role 'control' for the sample of the audience compared against), then
-- during its soak (role 'soak').
CREATE TABLE health_watch (
    campaign_id   bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    device_id     text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    role          text NOT NULL CHECK (role IN ('before', 'control', 'soak')),
    stage         integer,              -- the member's stage (no join to count per stage)
    verdict       text NOT NULL DEFAULT 'watching'
                  CHECK (verdict IN ('watching', 'soaking', 'healthy', 'unhealthy', 'ignored')),
    since         timestamptz NOT NULL DEFAULT now(),
    until         timestamptz,          -- the end of the soak
    interval_s    integer,              -- its PeriodicInformInterval (NULL: none)
    informs       integer NOT NULL DEFAULT 0,
    last_heard    timestamptz,
    -- the event codes of each 1 BOOT Inform seen, at most 50: [["1 BOOT", ...], ...]
    boots         jsonb NOT NULL DEFAULT '[]',
    -- KPIs and jobs last read (at this Inform); -infinity: never
    checked_at    timestamptz NOT NULL DEFAULT '-infinity',
    kpi_failures  integer[] NOT NULL DEFAULT '{}',  -- bad readings per KPI
    kpi_values    jsonb NOT NULL DEFAULT '{}',      -- the KPI parameters last read
    jobs          integer NOT NULL DEFAULT 0,       -- later jobs finished
    job_faults    integer NOT NULL DEFAULT 0,
    own_tasks     bigint[] NOT NULL DEFAULT '{}',   -- the watch's own reads: not the device's jobs
    baseline      jsonb,                -- the device before its upgrade, frozen at the soak's start
    baseline_tripped boolean NOT NULL DEFAULT false,
    signals       jsonb NOT NULL DEFAULT '[]',      -- the last judgement, signal by signal
    tripped       text[] NOT NULL DEFAULT '{}',     -- the signals over their threshold
    note          text,
    finished_at   timestamptz,
    PRIMARY KEY (campaign_id, device_id)
);
CREATE INDEX health_watch_device_idx ON health_watch (device_id)
    WHERE verdict IN ('watching', 'soaking');
-- what a tick reads, small partial indexes so that it stays well under a
-- second with 100,000 devices soaking (bench/soak.py): devices heard from
-- since their last reading, devices showing a signal, the unhealthy ones
CREATE INDEX health_watch_heard_idx ON health_watch (campaign_id)
    WHERE verdict IN ('watching', 'soaking') AND last_heard > checked_at;
CREATE INDEX health_watch_tripped_idx ON health_watch (campaign_id)
    WHERE cardinality(tripped) > 0;
CREATE INDEX health_watch_unhealthy_idx ON health_watch (campaign_id, stage)
    WHERE verdict = 'unhealthy';
CREATE INDEX health_watch_control_idx ON health_watch (campaign_id)
    WHERE role = 'control';

-- Every Inform of a watched device is counted where it is recorded: no session
-- code to call, no extra round trip for devices nobody watches (one probe of
-- the partial index). What a boot means is judged later, in Python.
CREATE FUNCTION health_watch_inform() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE health_watch
    SET informs = informs + 1,
        last_heard = NEW.last_inform,
        boots = CASE WHEN '1 BOOT' = ANY (NEW.last_events) AND jsonb_array_length(boots) < 50
                     THEN boots || jsonb_build_array(to_jsonb(NEW.last_events)) ELSE boots END
    WHERE device_id = NEW.id AND verdict IN ('watching', 'soaking');
    RETURN NULL;
END
$$;
CREATE TRIGGER devices_health_watch AFTER UPDATE OF last_inform ON devices
    FOR EACH ROW WHEN (NEW.last_inform IS DISTINCT FROM OLD.last_inform)
    EXECUTE FUNCTION health_watch_inform();

-- What each health gate decided, for the campaign's page, webhooks and metrics.
CREATE TABLE health_gates (
    id          bigserial PRIMARY KEY,
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    stage       integer NOT NULL,
    action      text NOT NULL,          -- passed | pause | abort
    reason      text NOT NULL,
    devices     text[] NOT NULL DEFAULT '{}',
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX health_gates_campaign_idx ON health_gates (campaign_id, id);
