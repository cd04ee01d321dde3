-- Scheduled downloads and transfer management (issue 17 items 4-6).

-- The RPC methods the CPE listed in its last GetRPCMethods answer (NULL: never
-- asked). A campaign with transfer 'auto' sends ScheduleDownload only to CPEs
-- that list it.
ALTER TABLE devices ADD COLUMN rpc_methods text[];

-- How a campaign hands its image to a device: a Download when due, or a
-- ScheduleDownload whose TimeWindow is the rest of the maintenance window, so
-- the CPE picks its own quiet moment ('auto': ScheduleDownload where the CPE
-- lists it in GetRPCMethods, Download elsewhere).
ALTER TABLE campaigns ADD COLUMN transfer text NOT NULL DEFAULT 'download'
    CHECK (transfer IN ('download', 'scheduleDownload', 'auto'));
