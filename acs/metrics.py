"""Prometheus metrics: the metric objects, and the few words the rest of the code says to them.

One ``Metrics`` per running ACS, each with its own ``CollectorRegistry``: tests
run several ACS instances in one process, and the library's global registry
would refuse the second set of metrics with the same names.

Label values come only from bounded sets. What a CPE sends (event codes, fault
codes) is mapped onto the codes the specification defines, else ``other``:
a hostile or buggy CPE must not be able to grow the number of series.

What lives in PostgreSQL (jobs waiting, campaign progress) is read when
Prometheus scrapes, at most once per ``db_cache_s`` whatever the number of
scrapers, and each scrape waits for it at most ``db_wait_s``: a scrape storm
costs the database one small query, and a busy pool never makes a scrape slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

import asyncpg
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from acs.cwmp.faults import FAULT_NAMES, is_vendor_fault
from acs.logs import log

logger = logging.getLogger("acs.metrics")

# the library adds a *_created series beside every counter and histogram; the
# text format's consumers ignore them, and they would double what a scrape sends
disable_created_metrics()

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

# How a CWMP exchange ended. An established session ends completed or
# abandoned (or db_unavailable); an attempt that never became a session is
# refused (8005: the device has a session elsewhere), rejected (4xx),
# overloaded (503: the process has ACS_MAX_SESSIONS_PER_WORKER sessions open)
# or db_unavailable (503). Each attempt counts once.
COMPLETED: Final = "completed"
ABANDONED: Final = "abandoned"
REFUSED: Final = "refused"
REJECTED: Final = "rejected"
OVERLOADED: Final = "overloaded"
# past a fair-admission limit (one client address, one CPE username)
LIMITED_ADDRESS: Final = "limited_address"
LIMITED_CREDENTIAL: Final = "limited_credential"
DB_UNAVAILABLE: Final = "db_unavailable"
SESSION_OUTCOMES: Final = (
    COMPLETED,
    ABANDONED,
    REFUSED,
    REJECTED,
    OVERLOADED,
    LIMITED_ADDRESS,
    LIMITED_CREDENTIAL,
    DB_UNAVAILABLE,
)

# Why a worker handed a CWMP request to the worker that owns its session
# (acs/web/relay.py): the session cookie named it, or the CPE sent no usable
# cookie and was found by its address in PostgreSQL.
RELAY_REASONS: Final = ("cookie", "address", "host_cookie", "host_address")

# TR-069 Amendment 6, Table 7 (and the M events of the RPCs that have one)
INFORM_EVENTS: Final = frozenset(
    {
        "0 BOOTSTRAP",
        "1 BOOT",
        "2 PERIODIC",
        "3 SCHEDULED",
        "4 VALUE CHANGE",
        "5 KICKED",
        "6 CONNECTION REQUEST",
        "7 TRANSFER COMPLETE",
        "8 DIAGNOSTICS COMPLETE",
        "9 REQUEST DOWNLOAD",
        "10 AUTONOMOUS TRANSFER COMPLETE",
        "11 DU STATE CHANGE COMPLETE",
        "12 AUTONOMOUS DU STATE CHANGE COMPLETE",
        "13 WAKEUP",
        "14 HEARTBEAT",
        "M Reboot",
        "M ScheduleInform",
        "M Download",
        "M ScheduleDownload",
        "M Upload",
        "M ChangeDUState",
    }
)

# Jobs that are still to run. Finished ones (done, fault, ...) only grow, and
# counting them would scan the whole table at every scrape: they are counted
# as they finish instead (acs_jobs_finished_total).
OPEN_JOB_STATES: Final = ("pending", "running")
# campaigns whose progress is still moving; finished ones would only add series
LIVE_CAMPAIGN_STATUSES: Final = ("running", "paused")

SESSION_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# a snapshot this old is no longer shown, even while the database is busy
DB_SNAPSHOT_MAX_AGE_FACTOR: Final = 10


def event_label(code: str) -> str:
    if code in INFORM_EVENTS:
        return code
    if code.startswith("X "):
        return "X vendor"
    return "other"


def fault_label(code: int) -> str:
    if code in FAULT_NAMES or is_vendor_fault(code):
        return str(code)
    return "other"


class DatabaseCollector:
    """Gauges read from PostgreSQL and the pool, as a Prometheus collector.

    ``refresh()`` (async, before rendering) updates the snapshot; ``collect()``
    (sync, called by the exposition code) only reads it.
    """

    def __init__(
        self, pool: asyncpg.Pool, *, cache_s: float, wait_s: float, query_timeout_s: float = 5.0
    ) -> None:
        self.pool = pool
        self.cache_s = cache_s
        self.wait_s = wait_s
        self.query_timeout_s = query_timeout_s
        self.up = 0
        self._jobs: dict[str, int] = {}
        self._campaigns: list[tuple[int, str, int]] = []
        self._soak: list[tuple[int, str, int]] = []
        self._gates: list[tuple[int, str, int]] = []
        self._taken_at = float("-inf")  # when the snapshot was read
        self._tried_at = float("-inf")  # when we last asked, successfully or not
        self._query: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        if time.monotonic() - self._tried_at < self.cache_s:
            return
        if self._query is None or self._query.done():
            self._query = asyncio.create_task(self._read())
        # every scraper waits for the same query; one that does not answer in
        # time keeps going for the next scrape while this one shows the last snapshot
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.wait_s):
                await asyncio.shield(self._query)

    async def _read(self) -> None:
        try:
            async with asyncio.timeout(self.query_timeout_s):
                async with self.pool.acquire() as conn:
                    jobs = await conn.fetch(
                        "SELECT status, count(*) AS n FROM tasks"
                        " WHERE status = ANY($1::text[]) GROUP BY status",
                        list(OPEN_JOB_STATES),
                    )
                    campaigns = await conn.fetch(
                        "SELECT cd.campaign_id, cd.state, count(*) AS n"
                        " FROM campaign_devices cd JOIN campaigns c ON c.id = cd.campaign_id"
                        " WHERE c.status = ANY($1::text[])"
                        " GROUP BY cd.campaign_id, cd.state",
                        list(LIVE_CAMPAIGN_STATUSES),
                    )
                    # the health soak (acs.services.soak): verdicts and gate decisions
                    soak = await conn.fetch(
                        "SELECT w.campaign_id, w.verdict AS key, count(*) AS n"
                        " FROM health_watch w JOIN campaigns c ON c.id = w.campaign_id"
                        " WHERE c.status = ANY($1::text[]) AND w.role = 'soak'"
                        " GROUP BY 1, 2",
                        list(LIVE_CAMPAIGN_STATUSES),
                    )
                    gates = await conn.fetch(
                        "SELECT g.campaign_id, g.action AS key, count(*) AS n"
                        " FROM health_gates g JOIN campaigns c ON c.id = g.campaign_id"
                        " WHERE c.status = ANY($1::text[]) GROUP BY 1, 2",
                        list(LIVE_CAMPAIGN_STATUSES),
                    )
        except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            self.up = 0
            log(logger, logging.WARNING, "metrics_db_read_failed", error=repr(exc))
        else:
            self._jobs = {r["status"]: r["n"] for r in jobs}
            self._campaigns = [(r["campaign_id"], r["state"], r["n"]) for r in campaigns]
            self._soak = [(r["campaign_id"], r["key"], r["n"]) for r in soak]
            self._gates = [(r["campaign_id"], r["key"], r["n"]) for r in gates]
            self._taken_at = time.monotonic()
            self.up = 1
        finally:
            self._tried_at = time.monotonic()

    async def close(self) -> None:
        if self._query is not None and not self._query.done():
            self._query.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._query

    def describe(self) -> Iterable[Metric]:
        return []  # the names are fixed below; nothing to check against other collectors

    def collect(self) -> Iterator[Metric]:
        pool = self.pool
        size, idle = pool.get_size(), pool.get_idle_size()
        yield GaugeMetricFamily(
            "acs_db_pool_size", "Connections the database pool has open", value=size
        )
        yield GaugeMetricFamily(
            "acs_db_pool_max_size", "Connections the database pool may open", pool.get_max_size()
        )
        yield GaugeMetricFamily("acs_db_pool_idle", "Open pool connections not in use", idle)
        yield GaugeMetricFamily("acs_db_pool_in_use", "Pool connections in use", size - idle)
        yield GaugeMetricFamily(
            "acs_database_up",
            "1 if the last read of the metrics below from PostgreSQL succeeded",
            self.up,
        )
        if time.monotonic() - self._taken_at > self.cache_s * DB_SNAPSHOT_MAX_AGE_FACTOR:
            return  # old numbers would look current: show none
        jobs = GaugeMetricFamily("acs_jobs", "Jobs still to run, by state", labels=["state"])
        for state in OPEN_JOB_STATES:
            jobs.add_metric([state], self._jobs.get(state, 0))
        yield jobs
        members = GaugeMetricFamily(
            "acs_campaign_devices",
            "Members of running and paused campaigns, by state",
            labels=["campaign", "state"],
        )
        for campaign, state, n in self._campaigns:
            members.add_metric([str(campaign), state], n)
        yield members
        soaked = GaugeMetricFamily(
            "acs_campaign_soak_devices",
            "Devices of running and paused campaigns in or past their health soak, by verdict",
            labels=["campaign", "verdict"],
        )
        for campaign, verdict, n in self._soak:
            soaked.add_metric([str(campaign), verdict], n)
        yield soaked
        gates = GaugeMetricFamily(
            "acs_campaign_health_gates",
            "Health gate decisions of running and paused campaigns, by action"
            " (passed, pause, abort)",
            labels=["campaign", "action"],
        )
        for campaign, action, n in self._gates:
            gates.add_metric([str(campaign), action], n)
        yield gates


def _child(cache: dict[tuple[Any, ...], Any], metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once: labels() takes a lock and
    builds its key on every call (3 us), and these run several times a session.
    Only for label values from bounded sets (outcomes, event labels, RPC names)."""
    key = (id(metric), *labels)
    child = cache.get(key)
    if child is None:
        child = cache[key] = metric.labels(*labels)
    return child


class Metrics:
    def __init__(
        self,
        pool: asyncpg.Pool | None = None,
        *,
        db_cache_s: float = 5.0,
        db_wait_s: float = 1.0,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sessions = Counter(
            "acs_cwmp_sessions",
            "CWMP sessions (and attempts that did not become one) by outcome",
            ["outcome"],
            registry=r,
        )
        for outcome in SESSION_OUTCOMES:  # present from the start, so rate() sees the first one
            self.sessions.labels(outcome)
        self.session_duration = Histogram(
            "acs_cwmp_session_duration_seconds",
            "Duration of CWMP sessions from Inform to their end, by outcome",
            ["outcome"],
            buckets=SESSION_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "acs_cwmp_sessions_in_flight", "CWMP sessions open now in this process", registry=r
        )
        self.inform_events = Counter(
            "acs_cwmp_inform_events",
            "Event codes of accepted Informs",
            ["event"],
            registry=r,
        )
        self.rpcs = Counter(
            "acs_cwmp_rpcs", "RPCs the ACS sent to CPEs, by method", ["method"], registry=r
        )
        self.cpe_faults = Counter(
            "acs_cwmp_cpe_faults",
            "Faults CPEs answered to the ACS's RPCs, by method and fault code",
            ["method", "code"],
            registry=r,
        )
        self.jobs_finished = Counter(
            "acs_jobs_finished",
            "Jobs this process finished (in CWMP sessions, or a transfer that timed out), "
            "by final state: done or fault",
            ["state"],
            registry=r,
        )
        self.connection_requests = Counter(
            "acs_connection_requests",
            "Connection requests sent to CPEs, by outcome",
            ["outcome"],
            registry=r,
        )
        # label children looked up once (_child): keyed by (metric id, labels)
        self._children: dict[tuple[Any, ...], Any] = {}
        self.stun_requests = Counter(
            "acs_stun_requests",
            "Datagrams the STUN server received, by what became of them (answered, "
            "challenged; dropped: malformed, unauthenticated, bad_integrity, rate_limited...)",
            ["outcome"],
            registry=r,
        )
        self.relayed = Counter(
            "acs_cwmp_relayed",
            "CWMP requests this worker passed to the worker owning their session, by how "
            "the owner was found (only with ACS_WORKERS > 1)",
            ["reason"],
            registry=r,
        )
        for reason in RELAY_REASONS:
            self.relayed.labels(reason)
        self.http_refused = Counter(
            "acs_http_refused",
            "Requests refused below the application (acs/web/guard.py), by listener and "
            "reason: header_timeout, body_timeout, malformed",
            ["listener", "reason"],
            registry=r,
        )
        # several hosts on one database (acs/services/leases.py): who this is, what it leads
        self.host = Gauge(
            "acs_host_info", "This ACS host (ACS_HOST_NAME); always 1", ["host"], registry=r
        )
        self.lease_held = Gauge(
            "acs_cluster_lease_held",
            "1 for each kind of periodic work whose cluster lease this process holds",
            ["lease"],
            registry=r,
        )
        self.ticks = Counter(
            "acs_cluster_ticks",
            "Periodic ticks this process ran under its cluster lease, by lease",
            ["lease"],
            registry=r,
        )
        self.database: DatabaseCollector | None = None
        if pool is not None:
            self.database = DatabaseCollector(pool, cache_s=db_cache_s, wait_s=db_wait_s)
            r.register(self.database)

    # ------------------------------------------------------------ what the code reports

    def session(self, outcome: str, duration_s: float | None = None) -> None:
        _child(self._children, self.sessions, outcome).inc()
        if duration_s is not None:
            _child(self._children, self.session_duration, outcome).observe(duration_s)

    def track_in_flight(self, count: Callable[[], int]) -> None:
        """The in-flight gauge reads ``count()`` at scrape time: it can never drift."""
        self.in_flight.set_function(count)

    def informed(self, events: Iterable[str]) -> None:
        for label in {event_label(code) for code in events}:
            _child(self._children, self.inform_events, label).inc()

    def rpc_sent(self, method: str) -> None:
        _child(self._children, self.rpcs, method).inc()

    def cpe_fault(self, method: str, code: int) -> None:
        self.cpe_faults.labels(method, fault_label(code)).inc()

    def job_finished(self, state: str) -> None:
        self.jobs_finished.labels(state).inc()

    def connection_request(self, outcome: str) -> None:
        self.connection_requests.labels(outcome).inc()

    def stun(self, outcome: str) -> None:
        # once per datagram on the STUN server: each outcome's child is looked up once
        _child(self._children, self.stun_requests, outcome).inc()

    def relay(self, reason: str) -> None:
        self.relayed.labels(reason).inc()

    def leases(self, host: str, held: Iterable[str], names: Iterable[str]) -> None:
        self.host.labels(host).set(1)
        mine = set(held)
        for name in names:
            self.lease_held.labels(name).set(1 if name in mine else 0)

    def tick(self, lease: str) -> None:
        self.ticks.labels(lease).inc()

    # ------------------------------------------------------------ exposition

    async def render(self) -> bytes:
        if self.database is not None:
            await self.database.refresh()
        return generate_latest(self.registry)

    async def close(self) -> None:
        if self.database is not None:
            await self.database.close()


# Read from PostgreSQL: the same numbers in every worker, so shown once (from the
# worker answering the scrape) and without a worker label, which would make a
# sum() over workers count every job N times.
DATABASE_FAMILIES: Final = frozenset(
    {
        "acs_database_up",
        "acs_jobs",
        "acs_campaign_devices",
        "acs_campaign_soak_devices",
        "acs_campaign_health_gates",
    }
)


class _Families:
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def merge_worker_metrics(texts: Mapping[int, bytes], answering: int) -> bytes:
    """Several workers' expositions as one, each series labelled ``worker``.

    With SO_REUSEPORT a scrape lands on any worker; a counter that jumps between
    two processes' values would look like resets to rate(). Prometheus' text
    format wants each family in one block, so the families are merged, not the
    texts concatenated.
    """
    merged: dict[str, Metric] = {}
    for worker, text in sorted(texts.items()):
        for family in text_string_to_metric_families(text.decode()):
            shared = family.name in DATABASE_FAMILIES
            if shared and worker != answering:
                continue
            into = merged.get(family.name)
            if into is None:
                into = Metric(family.name, family.documentation, family.type, family.unit)
                merged[family.name] = into
            for s in family.samples:
                labels = s.labels if shared else {**s.labels, "worker": str(worker)}
                into.add_sample(s.name, labels, s.value, s.timestamp, s.exemplar)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(merged.values()))  # type: ignore[arg-type]
    return generate_latest(registry)
