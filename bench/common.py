"""What every benchmark scenario needs: databases, an ACS process, /proc readings.

Scenarios run the ACS as its own process (`acs serve`), as an operator would,
and read its CPU time and memory from /proc, so the figures include
everything the server does and nothing the load generator does.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acs.store import db

BIN = Path(sys.executable).parent
DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
CPE_USERNAME, CPE_PASSWORD = "cpe", "bench"


def admin_dsn() -> str:
    """The PostgreSQL server scenarios create their databases on."""
    return os.environ.get("ACS_BENCH_DATABASE_URL", DEFAULT_ADMIN_DSN)


async def fresh_database(name: str, admin: str | None = None) -> str:
    """Drop and create ``name`` on the benchmark server; return its DSN."""
    await db.drop_database(admin or admin_dsn(), name)
    return await db.ensure_database(admin or admin_dsn(), name)


async def drop_database(name: str, admin: str | None = None) -> None:
    await db.drop_database(admin or admin_dsn(), name)


# --------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_seconds(pid: int) -> float:
    """The kernel's share of cpu_seconds (socket sends and receives, mostly)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return int(fields[12]) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def postgres_pids() -> list[int]:
    """Every PostgreSQL server process on the machine (their CPU is the database's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class CpuMeter:
    """CPU seconds used by some processes between start() and stop()."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self._start: dict[int, float] = {}
        self.seconds = 0.0

    def start(self) -> CpuMeter:
        self._start = {p: cpu_seconds(p) for p in self.pids}
        return self

    def stop(self) -> float:
        # a process that ended meanwhile counts what it had at the start (lower bound)
        self.seconds = sum(max(0.0, cpu_seconds(p) - t) for p, t in self._start.items())
        return self.seconds


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {}
    for mod in ("aiohttp", "lxml", "asyncpg"):
        try:
            versions[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            versions[mod] = "?"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        **versions,
    }


# --------------------------------------------------------------------------- the ACS


@dataclass
class AcsProcess:
    proc: subprocess.Popen[str]
    cwmp_port: int
    api_port: int
    files_port: int
    dsn: str
    token: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pids(self) -> list[int]:
        """The server and, with --workers, its worker processes."""
        out = [self.proc.pid]
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
            out += [int(p) for p in children.split()]
        except OSError:
            pass
        return out

    @property
    def cwmp_url(self) -> str:
        return f"http://127.0.0.1:{self.cwmp_port}/"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/v1"


def acs_env(dsn: str, port: int, data_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(
        os.environ,
        ACS_DATABASE_URL=dsn,
        ACS_CWMP_PORT=str(port),
        ACS_API_PORT=str(port + 1),
        ACS_FILES_PORT=str(port + 2),
        ACS_STUN_PORT="0",
        ACS_CPE_USERNAME=CPE_USERNAME,
        ACS_CPE_PASSWORD=CPE_PASSWORD,
        ACS_LOG_LEVEL="WARNING",
        ACS_DATA_DIR=str(data_dir),
    )
    return env | extra  # a scenario may override any of these (bench.knock: the STUN port)


@contextmanager
def running_acs(  # type: ignore[no-untyped-def]
    dsn: str, port: int, data_dir: Path, *args: str, command: list[str] | None = None, **extra: str
):
    """`acs serve` on ``dsn`` with CWMP on ``port`` (API +1, files +2) until the block ends;
    ``command`` runs instead of ``acs`` (bench.traced_acs), with the same arguments."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = acs_env(dsn, port, data_dir, **extra)
    name = f"bench-{time.time_ns()}"
    # a fresh database: the CLI creates an installation only when told to
    subprocess.run([str(BIN / "acs"), "migrate"], env=env, check=True, capture_output=True)
    token = subprocess.run(
        [str(BIN / "acs"), "token", "create", "--name", name, "--role", "admin"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    log = open(data_dir / "acs.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*(command or [str(BIN / "acs")]), "serve", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # it prints the URLs once it listens
            if line.startswith("Database:"):
                break
        else:
            raise RuntimeError(f"acs serve exited: see {data_dir / 'acs.log'}")
        yield AcsProcess(proc, port, port + 1, port + 2, dsn, token)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def raise_fd_limit() -> None:
    """Thousands of simulated CPEs need thousands of sockets, in both processes."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def emit(scenario: str, rows: list[dict[str, Any]]) -> None:
    """The last stdout line of a scenario: what the runner collects."""
    print(json.dumps({"scenario": scenario, "rows": rows}), flush=True)
