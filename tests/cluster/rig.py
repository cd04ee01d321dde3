"""The cluster rig: two ACS hosts behind HAProxy on PostgreSQL under Patroni + etcd.

Every host is a network namespace on one bridge (the root namespace's
``acsrigbr``, 10.77.0.1/24), so each server binds its own address and ports,
as on separate machines, and killing a host is killing every process in its
namespace:

    root namespace  10.77.0.1   the tests, the simulated CPEs (they reach only the LB)
    acsriglb        10.77.0.10  HAProxy: deploy/cluster/haproxy.cfg as it is
    acsrigacs1      10.77.0.11  acs serve
    acsrigacs2      10.77.0.12  acs serve
    acsrigpg1       10.77.0.21  Patroni + PostgreSQL 15 (deploy/cluster/patroni.yml)
    acsrigpg2       10.77.0.22  Patroni + PostgreSQL 15
    acsrigetcd      10.77.0.30  etcd, Patroni's consensus store

The names are fixed (one rig per machine: ``scripts/cluster down`` removes a
left-over one); the NAT tests (tests/e2e/netns.py) use other names and 10.200/16.
Needs root, iproute2, haproxy, patroni, etcd-server and PostgreSQL 15's binaries.
Every wait is bounded; ``close()`` removes everything, whatever state it is in.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

REPO = Path(__file__).resolve().parents[2]
HAPROXY_CFG = REPO / "deploy" / "cluster" / "haproxy.cfg"
PATRONI_YML = REPO / "deploy" / "cluster" / "patroni.yml"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
WORKDIR = Path("/tmp/acsrig")  # fixed, like the names: `down` finds it without state

BRIDGE = "acsrigbr"
ROOT_IP = "10.77.0.1"
ADDRESSES = {
    "lb": "10.77.0.10",
    "acs1": "10.77.0.11",
    "acs2": "10.77.0.12",
    "pg1": "10.77.0.21",
    "pg2": "10.77.0.22",
    "etcd": "10.77.0.30",
}
# the ports of deploy/cluster/haproxy.cfg and patroni.yml (the same on every host)
CWMP_PORT, API_PORT, FILES_PORT = 20747, 20757, 20767
PG_PORT, PATRONI_PORT, ETCD_PORT, ETCD_PEER_PORT = 20732, 20708, 20779, 20780
RELAY_PORT = 20790  # ACS host to ACS host (ACS_RELAY_LISTEN)

CPE_USER, CPE_PASSWORD = "cpe", "cpe-pw"
CR_USER, CR_PASSWORD = "cr", "cr-secret"


class RigUnavailable(Exception):
    pass


def netns(host: str) -> str:
    return f"acsrig{host}"


def why_not() -> str | None:
    """Why the rig cannot be built here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, PostgreSQL run as the postgres user)"
    for tool, package in (
        ("ip", "iproute2"),
        ("haproxy", "haproxy"),
        ("patroni", "patroni"),
        ("etcd", "etcd-server"),
        ("setpriv", "util-linux"),
    ):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (apt-get install -y {package})"
    if not (PG_BIN / "postgres").exists():
        return f"needs PostgreSQL 15 in {PG_BIN} (apt-get install -y postgresql-15)"
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return "needs a `postgres` user to run PostgreSQL as"
    return None


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=20)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")
    return proc


def namespace_pids(host: str) -> list[int]:
    proc = _run("ip", "netns", "pids", netns(host), check=False)
    return [int(p) for p in proc.stdout.split()] if proc.returncode == 0 else []


async def wait_until(predicate: Any, within_s: float, what: str, poll: float = 0.2) -> None:
    deadline = time.monotonic() + within_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {within_s} s: {what}")
        await asyncio.sleep(poll)


async def http_status(url: str, timeout_s: float = 2.0) -> int | None:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http:
            async with http.get(url) as resp:
                await resp.read()
                return resp.status
    except (TimeoutError, aiohttp.ClientError, OSError):
        return None


@dataclass
class Rig:
    workdir: Path = WORKDIR
    acs_env: dict[str, str] = field(default_factory=dict)  # extra ACS_* for both ACS hosts
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    pg_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    secrets_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    cluster_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    # ------------------------------------------------------------------ addresses
    @property
    def lb(self) -> str:
        return ADDRESSES["lb"]

    @property
    def cwmp_url(self) -> str:  # what CPEs are given: the load balancer, never a host
        return f"http://{self.lb}:{CWMP_PORT}/"

    @property
    def api_url(self) -> str:
        return f"http://{self.lb}:{API_PORT}"

    def host_api(self, host: str) -> str:
        return f"http://{ADDRESSES[host]}:{API_PORT}"

    def dsn(self, user: str = "acs", database: str = "acs") -> str:
        """libpq's multi-host form: whichever of the two is primary now."""
        hosts = ",".join(f"{ADDRESSES[h]}:{PG_PORT}" for h in ("pg1", "pg2"))
        password = self.pg_password
        return f"postgresql://{user}:{password}@{hosts}/{database}?target_session_attrs=read-write"

    # ------------------------------------------------------------------ network
    def build_network(self) -> None:
        if _run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
            raise RigUnavailable(
                f"a cluster rig is already up here ({BRIDGE} exists): scripts/cluster down"
            )
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{ROOT_IP}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        for host, address in ADDRESSES.items():
            ns, outside, inside = netns(host), f"acsrigv{host}", f"acsrigp{host}"
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            _run("ip", "link", "set", outside, "master", BRIDGE)
            _run("ip", "link", "set", outside, "up")
            _run("ip", "link", "set", inside, "netns", ns)
            _run("ip", "-n", ns, "link", "set", inside, "name", "eth0")
            _run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            _run("ip", "-n", ns, "route", "add", "default", "via", ROOT_IP)

    # ------------------------------------------------------------------ processes
    def spawn(self, name: str, host: str, argv: list[str], env: dict[str, str]) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        # a session of its own: a Ctrl-C at the terminal reaches `down`, not the servers
        self.procs[name] = subprocess.Popen(
            ["ip", "netns", "exec", netns(host), *argv],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # not the checkout: processes that drop to another user (patroni as
            # postgres) must be able to stand in their working directory
            cwd=self.workdir,
            start_new_session=True,
        )
        log.close()

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def start_etcd(self) -> None:
        a = ADDRESSES["etcd"]
        self.spawn(
            "etcd",
            "etcd",
            [
                "etcd",
                "--name=etcd1",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://{a}:{ETCD_PORT}",
                f"--advertise-client-urls=http://{a}:{ETCD_PORT}",
                f"--listen-peer-urls=http://{a}:{ETCD_PEER_PORT}",
                f"--initial-advertise-peer-urls=http://{a}:{ETCD_PEER_PORT}",
                f"--initial-cluster=etcd1=http://{a}:{ETCD_PEER_PORT}",
                "--initial-cluster-state=new",
            ],
            {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )

    def start_patroni(self, host: str) -> None:
        import pwd

        pg = pwd.getpwnam("postgres")
        data = self.workdir / host
        data.mkdir(mode=0o700, exist_ok=True)
        os.chown(data, pg.pw_uid, pg.pw_gid)
        a = ADDRESSES[host]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.workdir),
            "PATRONI_NAME": host,
            "PATRONI_RESTAPI_LISTEN": f"{a}:{PATRONI_PORT}",
            "PATRONI_RESTAPI_CONNECT_ADDRESS": f"{a}:{PATRONI_PORT}",
            "PATRONI_POSTGRESQL_LISTEN": f"{a}:{PG_PORT}",
            "PATRONI_POSTGRESQL_CONNECT_ADDRESS": f"{a}:{PG_PORT}",
            "PATRONI_POSTGRESQL_DATA_DIR": str(data / "data"),
            "PATRONI_POSTGRESQL_PGPASS": str(data / "pgpass"),
            "PATRONI_ETCD3_HOSTS": f"{ADDRESSES['etcd']}:{ETCD_PORT}",
            "PATRONI_SUPERUSER_PASSWORD": self.pg_password,
            "PATRONI_REPLICATION_PASSWORD": self.pg_password,
        }
        # patroni runs as postgres, which may not traverse the checkout (a clone in
        # a mode-700 temporary folder, as CI makes): it reads a copy in the rig's folder
        conf = self.workdir / "patroni.yml"
        shutil.copyfile(PATRONI_YML, conf)
        conf.chmod(0o644)
        argv = ["setpriv", f"--reuid={pg.pw_uid}", f"--regid={pg.pw_gid}", "--init-groups"]
        self.spawn(host, host, [*argv, "patroni", str(conf)], env)

    def acs_environment(self, host: str) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("ACS_")},
            "ACS_DATABASE_URL": self.dsn(),
            # one directory both hosts reach (here the same disk; in production a
            # shared mount or the store of cluster-files): images and uploads
            "ACS_DATA_DIR": str(self.workdir / "acs-data"),
            "ACS_HOST": ADDRESSES[host],
            "ACS_CWMP_PORT": str(CWMP_PORT),
            "ACS_API_PORT": str(API_PORT),
            "ACS_FILES_PORT": str(FILES_PORT),
            "ACS_STUN_ENABLE": "false",
            "ACS_PUBLIC_HOST": self.lb,
            "ACS_FILES_PUBLIC_URL": f"http://{self.lb}:{FILES_PORT}/",
            "ACS_TRUSTED_PROXIES": self.lb,
            "ACS_SECRETS_KEY": self.secrets_key,
            # the host relay: Digest nonces and session cookies good on every host, a
            # request for another host's session forwarded to it; leases by host name
            "ACS_CLUSTER_SECRET": self.cluster_secret,
            "ACS_RELAY_LISTEN": f"{ADDRESSES[host]}:{RELAY_PORT}",
            "ACS_HOST_NAME": host,
            "ACS_CPE_AUTH": "digest",
            "ACS_CPE_USERNAME": CPE_USER,
            "ACS_CPE_PASSWORD": CPE_PASSWORD,
            "ACS_CONNECTION_REQUEST_USERNAME": CR_USER,
            "ACS_CONNECTION_REQUEST_PASSWORD": CR_PASSWORD,
            "ACS_DEFAULT_POLICIES": "false",
            "ACS_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **self.acs_env,
        }

    def start_acs(self, host: str) -> None:
        entry = Path(sys.executable).with_name("acs")
        argv = [str(entry), "serve"] if entry.exists() else [sys.executable, "-m", "acs", "serve"]
        (self.workdir / "acs-data").mkdir(exist_ok=True)
        self.spawn(host, host, argv, self.acs_environment(host))

    def start_haproxy(self) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ACSRIG_RUN": str(self.workdir)}
        self.spawn("haproxy", "lb", ["haproxy", "-db", "-f", str(HAPROXY_CFG)], env)

    def kill_host(self, host: str) -> None:
        """A host crash: every process in its namespace SIGKILLed, nothing cleaned up."""
        for pid in namespace_pids(host):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc = self.procs.pop(host, None)
        if proc is not None:
            proc.wait(10)

    # ------------------------------------------------------------------ waits
    def _alive(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{name} exited ({proc.returncode}): {self.log_tail(name)}")

    async def wait_etcd(self) -> None:
        async def up() -> bool:
            self._alive("etcd")
            return await http_status(f"http://{ADDRESSES['etcd']}:{ETCD_PORT}/health") == 200

        await wait_until(up, 30, "etcd healthy")

    async def primary(self) -> str | None:
        """The database host Patroni says leads now (GET /primary answers 200 there)."""
        for host in ("pg1", "pg2"):
            if await http_status(f"http://{ADDRESSES[host]}:{PATRONI_PORT}/primary", 1.0) == 200:
                return host
        return None

    async def wait_primary(self, within_s: float = 90, not_host: str | None = None) -> str:
        found: list[str] = []

        async def led() -> bool:
            for host in ("pg1", "pg2"):
                if host in self.procs:
                    self._alive(host)
            host = await self.primary()
            if host is not None and host != not_host:
                found.append(host)
                return True
            return False

        await wait_until(led, within_s, "a Patroni primary", poll=0.5)
        return found[-1]

    async def wait_sync_standby(self, within_s: float = 90) -> None:
        """The standby streams synchronously: a commit is on both hosts from now on."""

        async def synced() -> bool:
            for host in ("pg1", "pg2"):
                url = f"http://{ADDRESSES[host]}:{PATRONI_PORT}/sync"
                if await http_status(url, 1.0) == 200:
                    return True
            return False

        await wait_until(synced, within_s, "a synchronous standby", poll=0.5)

    async def create_database(self) -> None:
        """The ACS's role and database, on the primary (the standby follows)."""
        conn = await asyncpg.connect(self.dsn("postgres", "postgres"), timeout=10)
        try:
            await conn.execute(f"CREATE ROLE acs LOGIN PASSWORD '{self.pg_password}'")
            await conn.execute("CREATE DATABASE acs OWNER acs")
        finally:
            await conn.close()

    async def wait_acs(self, host: str, within_s: float = 60) -> None:
        async def ready() -> bool:
            self._alive(host)
            return await http_status(f"{self.host_api(host)}/readyz") == 200

        await wait_until(ready, within_s, f"{host} ready", poll=0.3)

    async def wait_lb(self, backends: int) -> None:
        """HAProxy answers and has seen `backends` ACS hosts pass /readyz."""

        async def up() -> bool:
            self._alive("haproxy")
            if await http_status(f"{self.api_url}/readyz") != 200:
                return False
            return self.servers_up("cwmp") >= backends

        await wait_until(up, 30, f"HAProxy with {backends} healthy ACS hosts", poll=0.3)

    def servers_up(self, backend: str) -> int:
        """Servers of a backend HAProxy marks UP, from its runtime API (`show stat`, CSV)."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(5)
                s.connect(str(self.workdir / "haproxy.sock"))
                s.sendall(b"show stat\n")
                out = b""
                while chunk := s.recv(65536):
                    out += chunk
        except OSError:
            return 0
        rows = [line.split(",") for line in out.decode().splitlines()]
        return sum(
            1
            for r in rows
            if len(r) > 17
            and r[0] == backend
            and r[1] not in ("FRONTEND", "BACKEND")
            and r[17] == "UP"
        )

    # ------------------------------------------------------------------ whole rig
    async def up(self, acs_hosts: int = 2) -> None:
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        self.workdir.chmod(0o755)  # PostgreSQL, run as postgres, must reach its data
        (self.workdir / "secrets").write_text(
            f"PGPASSWORD={self.pg_password}\nACS_SECRETS_KEY={self.secrets_key}\n"
            f"ACS_CLUSTER_SECRET={self.cluster_secret}\n"
        )
        (self.workdir / "secrets").chmod(0o600)
        self.build_network()
        self.start_etcd()
        await self.wait_etcd()
        for host in ("pg1", "pg2"):
            self.start_patroni(host)
        await self.wait_primary()
        await self.wait_sync_standby()
        await self.create_database()
        self.start_haproxy()
        # one host first: it applies the migrations, the second finds them done
        for host in ("acs1", "acs2")[:acs_hosts]:
            self.start_acs(host)
            await self.wait_acs(host)
        await self.wait_lb(acs_hosts)

    def close(self, keep_logs: bool = False) -> None:
        """Everything down: processes (by the namespaces they run in), links, files."""
        for host in ADDRESSES:
            for pid in namespace_pids(host):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(namespace_pids(h) for h in ADDRESSES):
            time.sleep(0.2)
        for host in ADDRESSES:
            for pid in namespace_pids(host):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()
        for host in ADDRESSES:  # deleting a namespace deletes its veth and so the pair
            subprocess.run(["ip", "netns", "del", netns(host)], capture_output=True, timeout=10)
            subprocess.run(["ip", "link", "del", f"acsrigv{host}"], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, timeout=10)
        # ACSRIG_KEEP_LOGS=1: every server's log stays in /tmp/acsrig to read afterwards
        if not keep_logs and os.environ.get("ACSRIG_KEEP_LOGS") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)


def make_rig(**kw: Any) -> Rig:
    reason = why_not()
    if reason is not None:
        raise RigUnavailable(reason)
    return Rig(**kw)


async def metrics_of(url: str) -> str:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        async with http.get(f"{url}/metrics") as resp:
            return await resp.text()


def sessions_completed(metrics_text: str) -> int:
    for line in metrics_text.splitlines():
        if line.startswith('acs_cwmp_sessions_total{outcome="completed"}'):
            return int(float(line.split()[-1]))
    return 0


# --------------------------------------------------------------------------- scripts/cluster


def load() -> Rig:
    """The rig `up` left running: its secrets are in its work directory."""
    values = dict(
        line.split("=", 1) for line in (WORKDIR / "secrets").read_text().splitlines() if "=" in line
    )
    return Rig(
        pg_password=values["PGPASSWORD"],
        secrets_key=values["ACS_SECRETS_KEY"],
        cluster_secret=values["ACS_CLUSTER_SECRET"],
    )


async def demo() -> None:
    """A storm through the LB, one ACS host killed, then the primary: what an operator sees."""
    from cpe_simulator.fleet import Fleet, FleetConfig

    rig = load()

    async def show(what: str) -> None:
        counts = {}
        for host in ("acs1", "acs2"):
            try:
                counts[host] = sessions_completed(await metrics_of(rig.host_api(host)))
            except (TimeoutError, aiohttp.ClientError, OSError):
                counts[host] = "down"
        print(f"{what}: primary={await rig.primary()} sessions completed per host={counts}")

    fleet = Fleet(
        FleetConfig(
            acs_url=rig.cwmp_url,
            devices=40,
            serial_prefix="DEMO",
            username=CPE_USER,
            password=CPE_PASSWORD,
            periodic_interval=5,
            cr_host=ROOT_IP,
        )
    )
    await fleet.start()
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()), 120)
        await show("40 CPEs booted through the load balancer")
        rig.kill_host("acs2")
        print("acs2 killed (SIGKILL of every process in its namespace)")
        await asyncio.sleep(12)
        await show("12 s later, acs1 alone")
        rig.start_acs("acs2")
        await rig.wait_acs("acs2")
        await rig.wait_lb(2)
        await show("acs2 back")
        old = await rig.primary()
        assert old is not None
        rig.kill_host(old)
        started = time.monotonic()
        print(f"PostgreSQL primary {old} killed")
        new = await rig.wait_primary(90, not_host=old)
        print(f"Patroni promoted {new} after {time.monotonic() - started:.1f} s")
        await rig.wait_acs("acs1", 60)
        await rig.wait_acs("acs2", 60)
        await asyncio.sleep(10)
        await show("10 s after the ACS hosts answered /readyz again")
        rig.start_patroni(old)
        print(f"{old} restarted: it rejoins as a standby (pg_rewind)")
    finally:
        await fleet.stop()
    print(f"logs in {WORKDIR}; `scripts/cluster down` removes the rig")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "help"
    if command == "up":
        rig = make_rig()
        try:
            asyncio.run(rig.up())
        except BaseException:
            print(f"the rig did not come up; logs kept in {WORKDIR}", file=sys.stderr)
            rig.close(keep_logs=True)
            raise
        print(f"CWMP (give CPEs this URL): {rig.cwmp_url}")
        print(f"API and web UI:            {rig.api_url}/")
        print(f"database (multi-host):     {rig.dsn().replace(rig.pg_password, '***')}")
        print(f"password, logs:            {WORKDIR}/secrets, {WORKDIR}/*.log")
        print("run a command on a host:   ip netns exec acsrigacs1 ...")
        return 0
    if command == "demo":
        asyncio.run(demo())
        return 0
    if command == "down":
        Rig().close()
        print("cluster rig removed")
        return 0
    print("usage: scripts/cluster up|demo|down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
