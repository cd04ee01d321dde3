"""``acs serve --workers N``: a parent process and N workers sharing the ports.

One Python process is one core. The parent does what must happen once per
start, then supervises:

- starts the embedded PostgreSQL when no ``ACS_DATABASE_URL`` is set, runs the
  migrations and installs the default policies, all before any worker starts,
  and stops the embedded server after the last worker has exited;
- makes the secret the workers share (Digest nonces and the relay token,
  acs/web/relay.py) and the 0700 directory of their private sockets;
- turns a port 0 into a real port first, so that every worker binds the same;
- starts the workers (``spawn``: a fresh interpreter, no event loop or pool
  inherited from the parent); each binds the three ports with SO_REUSEPORT,
  and the kernel spreads connections over them;
- SIGTERM or SIGINT: SIGTERM to every worker, which finishes the requests in
  hand and abandons its open sessions as one process does; a worker still
  there after ``STOP_TIMEOUT_S`` is killed. SIGHUP is passed on (certificates);
- a worker that dies on its own is logged and started again with the same
  index (its sessions are lost, as in a crash of one process; their device
  locks expire and their jobs go back to the queue). A worker that keeps dying
  (``CRASH_LIMIT`` times within ``CRASH_WINDOW_S``: a port taken, a bad
  setting) stops the whole server with exit status 1, since restarting it
  would only hide the fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import time
from collections import deque
from multiprocessing.process import BaseProcess
from pathlib import Path

from acs import logs
from acs.config import LISTENERS, Settings
from acs.logs import log
from acs.store.db import EmbeddedPostgres, create_pool
from acs.web.host_relay import shared_secret
from acs.web.relay import Workers, make_run_dir
from acs.web.server import prepare_database, serve_until_signalled

logger = logging.getLogger("acs.workers")

STOP_TIMEOUT_S = 30.0
RESTART_DELAY_S = 1.0
CRASH_LIMIT = 5
CRASH_WINDOW_S = 60.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the parent dies, even by SIGKILL: orphaned
    workers would go on serving with nobody to stop them or the database."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _worker_main(settings: Settings, dsn: str, workers: Workers, log_level: int) -> None:
    """A worker process's entry point (runs in a fresh interpreter)."""
    _die_with_parent()
    logs.setup(logging.getLevelName(log_level), worker=workers.index)
    embedded = settings.database_url is None
    asyncio.run(serve_until_signalled(settings, dsn, embedded=embedded, workers=workers))


def _fix_ports(settings: Settings) -> list[socket.socket]:
    """Port 0 means "any free port": chosen here once, or each worker would get its own.

    The sockets stay bound (never listening, so they take no connections) while
    the server runs, which keeps any other program from taking the port.
    """
    held = []
    for name in LISTENERS:
        attr = f"{name}_port"
        if getattr(settings, attr) != 0:
            continue
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((settings.host, 0))
        setattr(settings, attr, sock.getsockname()[1])
        held.append(sock)
    if settings.stun_enable and settings.stun_port == 0:
        # not held: a bound UDP socket in the workers' SO_REUSEPORT group would
        # receive its share of the CPEs' Binding Requests and answer none
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((settings.host, 0))
            settings.stun_port = sock.getsockname()[1]
    return held


class Supervisor:
    def __init__(self, settings: Settings, dsn: str, workers: list[Workers]) -> None:
        self.settings = settings
        self.dsn = dsn
        self.workers = workers
        self.procs: dict[int, BaseProcess] = {}
        self.deaths: deque[float] = deque()
        self.context = multiprocessing.get_context("spawn")
        self.stop = asyncio.Event()
        self.failed = False

    def start(self, index: int) -> None:
        proc = self.context.Process(
            target=_worker_main,
            args=(self.settings, self.dsn, self.workers[index], logging.getLogger().level),
            name=f"acs-worker-{index}",
        )
        proc.start()
        self.procs[index] = proc
        log(logger, logging.INFO, "worker_started", worker=index, pid=proc.pid)

    def signal_all(self, sig: int) -> None:
        for proc in self.procs.values():
            if proc.pid is not None and proc.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)

    async def watch(self) -> None:
        """Restart workers that die, until told to stop or a worker keeps dying."""
        restart_at: dict[int, float] = {}
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 0.5)
            if self.stop.is_set():
                break
            now = time.monotonic()
            for index, proc in list(self.procs.items()):
                if proc.exitcode is None or index in restart_at:
                    continue
                log(
                    logger,
                    logging.ERROR,
                    "worker_died",
                    worker=index,
                    pid=proc.pid,
                    exitcode=proc.exitcode,
                )
                self.deaths.append(now)
                while self.deaths and self.deaths[0] < now - CRASH_WINDOW_S:
                    self.deaths.popleft()
                if len(self.deaths) >= CRASH_LIMIT:
                    log(
                        logger,
                        logging.ERROR,
                        "workers_crash_loop",
                        deaths=len(self.deaths),
                        window_s=CRASH_WINDOW_S,
                    )
                    self.failed = True
                    self.stop.set()
                    break
                restart_at[index] = now + RESTART_DELAY_S
            for index, when in list(restart_at.items()):
                if when <= now and not self.stop.is_set():
                    del restart_at[index]
                    self.start(index)

    async def shutdown(self) -> None:
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for index, proc in self.procs.items():
            left = max(0.0, deadline - time.monotonic())
            await asyncio.to_thread(proc.join, left)
            if proc.exitcode is None:
                log(logger, logging.ERROR, "worker_killed", worker=index, pid=proc.pid)
                proc.kill()
                await asyncio.to_thread(proc.join, 5)
            else:
                log(logger, logging.INFO, "worker_stopped", worker=index, exitcode=proc.exitcode)


async def _prepare(settings: Settings, dsn: str) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        await prepare_database(pool, settings)
    finally:
        await pool.close()


async def supervise(settings: Settings) -> None:
    """Run ``settings.workers`` workers until SIGTERM/SIGINT; exit 1 on a crash loop."""
    embedded: EmbeddedPostgres | None = None
    dsn = settings.database_url
    run_dir: Path | None = None
    temporary = False
    held: list[socket.socket] = []
    supervisor: Supervisor | None = None
    try:
        if dsn is None:
            embedded = EmbeddedPostgres()
            dsn = embedded.start(settings.pgdata_dir.resolve())
        await _prepare(settings, dsn)
        held = _fix_ports(settings)
        run_dir, temporary = make_run_dir(settings.data_dir)
        # in memory only, a full restart makes a new one; in a cluster, the same on
        # every host (from ACS_CLUSTER_SECRET), so cookies and nonces verify anywhere
        if settings.cluster_secret is not None:
            secret = shared_secret(settings.cluster_secret)
        else:
            secret = os.urandom(32)
        workers = [Workers(i, settings.workers, run_dir, secret) for i in range(settings.workers)]
        supervisor = Supervisor(settings, dsn, workers)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, supervisor.stop.set)
        loop.add_signal_handler(signal.SIGHUP, supervisor.signal_all, signal.SIGHUP)
        for index in range(settings.workers):
            supervisor.start(index)
        await supervisor.watch()
    finally:
        if supervisor is not None:
            await supervisor.shutdown()
        for sock in held:
            sock.close()
        if run_dir is not None:
            if temporary:
                shutil.rmtree(run_dir, ignore_errors=True)
            else:
                for path in run_dir.glob("worker-*.sock"):
                    path.unlink(missing_ok=True)
        if embedded is not None:
            embedded.stop()  # after the workers: they were its clients
    if supervisor is not None and supervisor.failed:
        raise SystemExit(1)
