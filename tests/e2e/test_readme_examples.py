"""Every shell example of the README, run as written against a real ACS and the
real simulator, so the README cannot drift from what the ACS does.

The ```sh blocks of the sections a user runs against a running ACS are taken
from README.md and executed by bash in README order, in a directory laid out
like the checkout after `make run` (`.venv` and `var/`), against an ACS with
`make run`'s settings on a database of its own (fresh, as on a first start:
the shipped default policies are created). Only the ports differ: the README's
7547/7557/7567 become this ACS's, and each simulated fleet listens for
connection requests on a free port. A block that starts with "# in a second
terminal" runs in the background, as the user's second terminal would, and is
stopped (Ctrl-C) at the end. `curl` fails on an HTTP error, so a README
request the API refuses fails the test; after each block the outcome the README
promises is checked through the API.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from acs.store.db import drop_database, ensure_database
from acs.web.launch import ensure_shared_credential
from acs.web.server import Running, running_acs
from tests.e2e.conftest import make_settings
from tests.e2e.test_api import Client

pytestmark = pytest.mark.db

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"

BACKGROUND = "# in a second terminal"
DEV = "ACDE48-HGW-SIM00000001"  # the README's simulated gateway

#: sections whose shell blocks are not run here, and why; every other section's are
NOT_RUN = {
    "Two commands": "make targets: `make test` runs this suite, the fixture here is `make run`",
    "Settings": "database-side CLI; `acs cpe-credential set` asks for a password on a terminal",
    "Web UI": "`acs user create` asks for a password on a terminal (tests/e2e/test_ui*.py)",
    "TLS": "production setup with the operator's own certificate files (tests/e2e/test_tls.py)",
    "CPE client certificates": "production setup with a CA of the operator's (test_tls.py)",
    "Webhooks": "its hook URL is a host outside this machine (tests/e2e/test_webhooks.py)",
}


@dataclass(frozen=True, slots=True)
class Block:
    section: str
    line: int  # of the opening fence, for messages
    text: str

    @property
    def background(self) -> bool:
        return self.text.startswith(BACKGROUND)

    @property
    def first(self) -> str:
        return self.text.splitlines()[0]


def shell_blocks(readme: str) -> list[Block]:
    """The ```sh blocks of the README with the heading (## or ###) each is under."""
    blocks: list[Block] = []
    section = ""
    lines = readme.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        heading = re.match(r"#{2,3} (.+)", line)
        if heading:
            section = heading.group(1).strip()
        elif line.startswith("```"):
            start = i
            i += 1
            body: list[str] = []
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            if line.strip() == "```sh":
                blocks.append(Block(section, start + 1, "\n".join(body)))
        i += 1
    return blocks


def localized(text: str, ports: dict[str, int]) -> str:
    """The block with this ACS's ports, and a free connection-request port per fleet."""
    for default, name in (("7547", "cwmp"), ("7557", "api"), ("7567", "files")):
        text = text.replace(f"127.0.0.1:{default}", f"127.0.0.1:{ports[name]}")
    if "stun" in ports:  # STUNServerPort in a JSON body
        text = text.replace('"3478"', f'"{ports["stun"]}"')
    text = re.sub(r"--cr-port \d+", "--cr-port 0", text)
    return re.sub(r"cpe-sim (?=--acs-url)(?!.*--cr-port)", "cpe-sim --cr-port 0 ", text)


# Every block is one bash; `set -a` exports what it assigns, so the variables a
# block sets (T, API, DEV...) reach the blocks after it, as in one terminal.
PRELUDE = """set -euo pipefail
set -a
curl() { command curl --fail-with-body -sS "$@"; echo; }
"""
_SHELL_OWN = {"PWD", "OLDPWD", "SHLVL", "_"}


class Shell:
    """The user's terminal: runs blocks in the checkout-like directory."""

    def __init__(self, workdir: Path, env: dict[str, str], ports: dict[str, int]) -> None:
        self.workdir, self.env, self.ports = workdir, env, ports
        self.background: list[tuple[asyncio.subprocess.Process, Path]] = []

    async def run(self, block: Block, timeout_s: float = 120.0) -> str:
        state = self.workdir / f".state-{block.line}"
        script = PRELUDE + localized(block.text, self.ports) + f'\nenv -0 > "{state}"\n'
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            script,
            cwd=self.workdir,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"README line {block.line} ran over {timeout_s} s") from None
        text = out.decode()
        assert proc.returncode == 0, f"README line {block.line} failed:\n{block.text}\n---\n{text}"
        for item in state.read_bytes().split(b"\0"):
            name, _, value = item.decode().partition("=")
            if name and name not in _SHELL_OWN and not name.startswith("BASH_FUNC_"):
                self.env[name] = value
        return text

    async def start(self, block: Block) -> Path:
        """A block of the second terminal: started, left running; returns its output file."""
        out = self.workdir / f".out-{block.line}"
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            PRELUDE + localized(block.text, self.ports),
            cwd=self.workdir,
            env=self.env,
            stdout=out.open("wb"),
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group, which Ctrl-C reaches
        )
        self.background.append((proc, out))
        return out

    async def interrupt(self, out: Path, timeout_s: float = 30.0) -> str:
        """Ctrl-C in the terminal that writes ``out``; returns all it printed."""
        for proc, path in self.background:
            if path == out and proc.returncode is None:
                os.killpg(proc.pid, signal.SIGINT)
                await asyncio.wait_for(proc.wait(), timeout_s)
                assert proc.returncode == 0, out.read_text()
        return out.read_text()

    async def close(self) -> None:
        for proc, _ in self.background:
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    os.killpg(proc.pid, signal.SIGKILL)
                    await proc.wait()


async def eventually(what: str, probe: Callable[[], Awaitable[Any]], within_s: float) -> Any:
    """The first truthy answer of ``probe`` within the time, else fail saying what."""
    deadline = time.monotonic() + within_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what} not within {within_s} s (last: {last!r})")


@dataclass
class World:
    acs: Running
    pool: asyncpg.Pool
    shell: Shell
    admin: Client | None = None

    async def get(self, path: str) -> Any:
        assert self.admin is not None
        status, body = await self.admin.call("GET", path)
        assert status == 200, (path, status, body)
        return body


# ------------------------------------------------------------------- what each block promises


async def _token(w: World, block: Block, out: str) -> None:
    token = w.shell.env["T"]
    assert token.startswith("acs_"), token
    assert w.shell.env["API"] == f"http://127.0.0.1:{w.acs.ports['api']}/api/v1"
    assert re.search(r"^me\b.*admin", out, re.M), out  # `acs token list`
    w.admin = Client(w.acs, token)
    assert (await w.get("/me"))["role"] == "admin"
    # the viewer token it printed was revoked at once: it opens nothing
    (ci,) = [t for t in re.findall(r"^acs_\S+$", out, re.M) if t != token]
    revoked = Client(w.acs, ci)
    try:
        status, body = await revoked.call("GET", "/me")
        assert status == 401, body
    finally:
        await revoked.close()


async def _gateway(w: World, block: Block, out: str) -> None:
    async def bootstrapped() -> bool:
        # its first session ran to the end: the shipped policies gave it its
        # connection-request credentials, which the knocks below need
        async with w.pool.acquire() as conn:
            return bool(
                await conn.fetchval(
                    "SELECT s.session_id IS NULL FROM device_sessions s"
                    " JOIN connection_request_credentials c ON c.device_id = s.device_id"
                    " WHERE s.device_id = $1",
                    DEV,
                )
            )

    try:
        await eventually("the simulated gateway's first session", bootstrapped, 120)
    except AssertionError as err:
        raise AssertionError(f"{err}; the simulator printed:\n{Path(out).read_text()}") from None


async def _device_queries(w: World, block: Block, out: str) -> None:
    assert w.shell.env["DEV"] == DEV
    assert f'"id":"{DEV}"' in out.replace(" ", ""), out
    (job,) = [
        t
        for t in (await w.get(f"/devices/{DEV}/tasks"))["items"]
        if t["name"] == "setParameterValues"
    ]
    assert job["status"] == "done", job
    tree = await w.get(f"/devices/{DEV}?prefix=Device.WiFi.SSID.1.SSID")
    assert tree["parameters"]["Device.WiFi.SSID.1.SSID"]["value"] == "home", tree


async def _firmware_job(w: World, block: Block, out: str) -> None:
    assert (
        (w.shell.workdir / "fw-2.0.bin").read_bytes().startswith(b"CPE-SIM-FIRMWARE version=2.0.0")
    )
    (job,) = [t for t in (await w.get(f"/devices/{DEV}/tasks"))["items"] if t["name"] == "download"]
    assert job["status"] == "done", job
    assert job["result"]["transferComplete"]["faultCode"] == 0, job
    device = await w.get(f"/devices/{DEV}")
    assert device["softwareVersion"] == "2.0.0", device
    assert {"M Download", "1 BOOT"} <= set(device["lastEvents"]), device


async def _backup(w: World, block: Block, out: str) -> None:
    import hashlib

    (backup,) = (await w.get(f"/devices/{DEV}/backups"))["items"]
    assert backup["id"] == 1 and backup["firmware"] == "2.0.0", backup
    saved = (w.shell.workdir / "gateway.cfg").read_bytes()
    assert hashlib.sha256(saved).hexdigest() == backup["sha256"], backup
    assert b"Device.WiFi.SSID.1.SSID=home\n" in saved  # the value the README set
    jobs = (await w.get(f"/devices/{DEV}/tasks"))["items"]
    (upload,) = [t for t in jobs if t["name"] == "upload"]
    assert upload["status"] == "done", upload
    (restore,) = [t for t in jobs if t["args"].get("backupId") == 1]
    assert restore["args"]["fileType"] == "3 Vendor Configuration File", restore


async def _catalog(w: World, block: Block, out: str) -> None:
    items = (await w.get("/firmware/images"))["items"]
    assert [(i["file"], i["version"], i["channel"]) for i in items] == [
        ("fw-2.1.bin", "2.1.0", "stable")
    ], items


async def _campaign(w: World, block: Block, out: str) -> None:
    async def completed() -> Any:
        body = await w.get("/campaigns/1")
        return body if body["status"] == "completed" else None

    # unattended: nothing but the ACS's own ticks and knocks from here on
    campaign = await eventually("the README's campaign completing", completed, 120)
    assert campaign["connectionRequest"] is True, campaign
    devices = (await w.get("/campaigns/1/devices"))["items"]
    assert [(d["device"], d["state"]) for d in devices] == [(DEV, "succeeded")], devices
    assert (await w.get(f"/devices/{DEV}"))["softwareVersion"] == "2.1.0"


DU_DEV = "ACDE48-HGW-DU00000001"  # the Software modules section's CWMP 1.4 gateway


async def _du_gateway(w: World, block: Block, out: str) -> None:
    async def bootstrapped() -> bool:
        # as _gateway: its first session over, its connection-request credentials set
        async with w.pool.acquire() as conn:
            return bool(
                await conn.fetchval(
                    "SELECT s.session_id IS NULL AND d.cwmp_version = '1.4' FROM devices d"
                    " JOIN device_sessions s ON s.device_id = d.id"
                    " JOIN connection_request_credentials c ON c.device_id = d.id"
                    " WHERE d.id = $1",
                    DU_DEV,
                )
            )

    try:
        await eventually("the CWMP 1.4 gateway's first session", bootstrapped, 120)
    except AssertionError as err:
        raise AssertionError(f"{err}; the simulator printed:\n{Path(out).read_text()}") from None


async def _software(w: World, block: Block, out: str) -> None:
    uuid = "0b8f3c57-2d43-4d6c-9a41-5a2f7f0e6a11"
    (job,) = [
        t
        for t in (await w.get(f"/devices/{DU_DEV}/tasks"))["items"]
        if t["name"] == "changeDUState"
    ]

    async def closed() -> Any:
        body = await w.get(f"/tasks/{job['id']}")
        return body if body["status"] in ("done", "fault") else None

    job = await eventually("the README's changeDUState job", closed, 60)
    assert job["status"] == "done" and job["result"]["results"][0]["uuid"] == uuid, job

    async def listed() -> Any:
        # the session that closed the job re-reads SoftwareModules. before it ends
        return (await w.get(f"/devices/{DU_DEV}/software"))["modules"]

    (module,) = await eventually("the installed module in the inventory", listed, 30)
    assert (module["name"], module["version"], module["uuid"]) == ("weather", "1.0", uuid)
    assert [u["name"] for u in module["executionUnits"]] == ["weather-main"], module


async def _bulk(w: World, block: Block, out: str) -> None:
    assert '"dryRun":true,"devices":1' in out.replace(" ", ""), out

    async def completed() -> Any:
        body = await w.get("/bulk-jobs/1")
        return body if body["status"] == "completed" else None

    # quick typing can leave the gateway busy (it takes 3 knocks in 10 s); the
    # job knocks it again 30 s later
    job = await eventually("the README's bulk job completing", completed, 120)
    assert job["progress"]["done"] == 1 and job["total"] == 1, job
    (row,) = (await w.get("/bulk-jobs/1/devices"))["items"]
    assert row["device"] == DEV and row["connectionRequest"]["ok"] is True, row


async def _diagnostics(w: World, block: Block, out: str) -> None:
    ping, trace = [
        t for t in (await w.get(f"/devices/{DEV}/tasks"))["items"] if t["name"] == "diagnostics"
    ]
    assert ping["status"] == trace["status"] == "done", (ping, trace)
    assert (ping["result"]["ping"]["successCount"], ping["result"]["ping"]["failureCount"]) == (
        3,
        0,
    )
    assert [h["address"] for h in trace["result"]["traceroute"]["hops"]] == ["127.0.0.1"], trace
    assert out.replace(" ", "").count('"diagnosticsState":"Complete"') >= 2, out  # as printed


async def _stun(w: World, block: Block, out: str) -> None:
    (job,) = [
        t
        for t in (await w.get(f"/devices/{DEV}/tasks"))["items"]
        if t["name"] == "setParameterValues"
        and any("STUNEnable" in p[0] for p in t["args"]["parameterValues"])
    ]
    assert job["status"] == "done", job

    async def bound() -> Any:
        reach = await w.get(f"/devices/{DEV}/connection-request")
        return reach if reach["stunBinding"] else None

    # the gateway's signed Binding Requests reached the ACS's STUN server
    reach = await eventually("the gateway's STUN binding", bound, 60)
    assert reach["stunBinding"]["address"] == "127.0.0.1", reach
    assert "udp" in reach["order"], reach
    assert "stun-password-of-this-gateway" not in out, "a secret was shown in clear"


async def _secret_read(w: World, block: Block, out: str) -> None:
    path = "Device.ManagementServer.ConnectionRequestPassword"
    read = json.loads(out)
    assert read["device"] == DEV and read["path"] == path, read
    assert read["value"] and read["value"] != "********", read
    tree = await w.get(f"/devices/{DEV}?prefix={path}")
    assert tree["parameters"][path]["value"] == "********", tree  # only this route shows it
    async with w.pool.acquire() as conn:
        action = await conn.fetchval(
            "SELECT action FROM audit_log WHERE object_id = $1 AND detail->>'path' = $2",
            DEV,
            path,
        )
    assert action == "device.secret.read"


async def _session_logs(w: World, block: Block, out: str) -> None:
    # three answers: the list, then (after S=...) the newest session with its messages
    listed, session = (json.loads(line) for line in out.split("\n") if line.startswith("{"))
    assert listed["items"] and all(i["id"] for i in listed["items"]), listed
    assert session["id"] == listed["items"][0]["id"], (session, listed["items"][0])
    rpcs = [msg["rpc"] for msg in session["messages"]]
    assert rpcs and rpcs[0] == "Inform", rpcs  # every session starts with the CPE's Inform


async def _audit_log(w: World, block: Block, out: str) -> None:
    by_actor, by_device, by_campaign = (
        json.loads(line) for line in out.split("\n") if line.startswith("{")
    )
    assert by_actor["items"] and {r["actor"] for r in by_actor["items"]} == {"me"}, by_actor
    actions = {r["action"] for r in by_device["items"]}
    assert "device.task.create" in actions, actions  # the README's jobs on the gateway
    assert {r["objectType"] for r in by_campaign["items"]} == {"campaign"}, by_campaign
    assert 1 <= len(by_campaign["items"]) <= 2, by_campaign


async def _load(w: World, block: Block, out: str) -> None:
    async def registered() -> int:
        async with w.pool.acquire() as conn:
            n: int = await conn.fetchval(
                "SELECT count(*) FROM devices WHERE serial_number LIKE 'LOAD%'"
            )
        return n if n >= 5 else 0

    await eventually("gateways of the load fleet registering", registered, 90)
    printed = await w.shell.interrupt(Path(out))
    assert re.search(r"^500 CPEs \(tr181-gateway\)", printed, re.M), printed
    assert re.search(r"^final: \d+ sessions ok", printed, re.M), printed


async def _fleet_jobs(w: World, block: Block, out: str) -> None:
    faulted = await w.get(f"/tasks?status=fault&device={DEV}")
    (job,) = [t for t in faulted["items"] if t["name"] == "setParameterValues"]
    assert job["fault"]["code"] == 9003, job
    assert "Device.DeviceInfo.SoftwareVersion: 9008" in job["fault"]["cause"], job
    assert '"cause":' in out and '"groups":' in out and '"counts":' in out, out
    assert out.rstrip().endswith('{"matched":1,"action":"dismissed"}'), out
    # dismissed: off the open list, the job keeps its fault
    assert (await w.get(f"/faults?device={DEV}"))["total"] == 0
    assert (await w.get(f"/tasks/{job['id']}"))["status"] == "fault"


Check = Callable[[World, Block, str], Awaitable[None]]

#: (section, first line of the block, what it promises), in README order: a
#: new or moved block of these sections fails the coverage test until listed
CHECKS: list[tuple[str, str, Check]] = [
    ("Operator API", "T=$(.venv/bin/acs token create", _token),
    ("Operator API", BACKGROUND, _gateway),
    ("Operator API", "DEV=ACDE48-HGW-SIM00000001", _device_queries),
    ("Operator API", "# a firmware image the simulator accepts", _firmware_job),
    ("Jobs and faults across the fleet", "# a job the gateway refuses", _fleet_jobs),
    ("Config backup and restore", "# back up the gateway", _backup),
    ("Firmware catalog and campaigns", ".venv/bin/cpe-sim make-image --version 2.1.0", _catalog),
    (
        "Firmware catalog and campaigns",
        'curl -H "Authorization: Bearer $T" -X POST "$API/campaigns"',
        _campaign,
    ),
    ("Bulk jobs", 'curl -H "Authorization: Bearer $T" -X POST "$API/devices/$DEV/tags"', _bulk),
    ("Software modules", BACKGROUND, _du_gateway),
    ("Software modules", "DU_DEV=ACDE48-HGW-DU00000001", _software),
    ("Diagnostics", "# a ping from the gateway to the ACS's own host", _diagnostics),
    ("CPE simulator", BACKGROUND, _load),
    (
        "CPEs behind a NAT (STUN and UDP connection requests)",
        'curl -H "Authorization: Bearer $T" -X POST "$API/devices/$DEV/tasks?connection_request',
        _stun,
    ),
    ("Secrets", "# the simulated gateway's connection-request password", _secret_read),
    (
        "Session logs",
        'curl -H "Authorization: Bearer $T" "$API/devices/$DEV/sessions"',
        _session_logs,
    ),
    ("Audit log", 'curl -H "Authorization: Bearer $T" "$API/audit?actor=me', _audit_log),
]


def covered_blocks() -> list[Block]:
    return [b for b in shell_blocks(README.read_text()) if b.section not in NOT_RUN]


def test_every_shell_block_of_the_readme_is_run_or_excused() -> None:
    blocks = shell_blocks(README.read_text())
    sections = {b.section for b in blocks}
    assert set(NOT_RUN) <= sections, (
        f"excused sections without shell blocks: {set(NOT_RUN) - sections}"
    )
    run = [(b.section, b.first) for b in blocks if b.section not in NOT_RUN]
    listed = [(section, first) for section, first, _ in CHECKS]
    assert len(run) == len(listed), f"README blocks run: {run}; checked: {listed}"
    for (section, first), (want_section, prefix) in zip(run, listed, strict=True):
        assert section == want_section and first.startswith(prefix), (section, first, prefix)


# --------------------------------------------------------------------------- the run


class KnockPace:
    """The README's gateway takes 3 connection requests in 10 s and answers the
    next with 503, as TR-069 3.2.2 lets a CPE (cpe_simulator/connreq.py). A user
    reads between examples; the test does not, so before a block that knocks
    it waits until the gateway would take that block's knocks. A campaign or
    bulk job made with ``"connectionRequest": true`` knocks too (the ACS does,
    within a second of the block), so it counts as one."""

    WINDOW_S, BURST = 11.0, 3

    def __init__(self) -> None:
        self.knocks: list[float] = []

    async def before(self, block: Block) -> None:
        wanted = sum(
            block.text.count(word)
            for word in ("connection_request=true", "/knock", '"connectionRequest": true')
        )
        if not wanted:
            return
        while True:
            now = time.monotonic()
            self.knocks = [t for t in self.knocks if now - t < self.WINDOW_S]
            if len(self.knocks) + min(wanted, self.BURST) <= self.BURST:
                break
            await asyncio.sleep(self.WINDOW_S - (now - self.knocks[0]))
        self.knocks += [time.monotonic()] * wanted


@pytest_asyncio.fixture(loop_scope="session")
async def fresh_database(pg_admin_url: str) -> AsyncIterator[str]:
    """A database of its own: a first start creates the shipped default policies,
    which must not reach the devices of the suite's other tests."""
    name = f"acs_readme_{secrets.token_hex(4)}"
    url = await ensure_database(pg_admin_url, name)
    try:
        yield url
    finally:
        await drop_database(pg_admin_url, name)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """Where the user types: the checkout's `.venv`, and `var/` for the ACS's data."""
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    (tmp_path / "var").mkdir()
    return tmp_path


async def test_the_readme_examples_run_as_written(fresh_database: str, checkout: Path) -> None:
    # `make run`'s settings (digest with a generated credential in var/, the
    # default policies) but ephemeral ports; campaigns tick every second
    # instead of ten, only so the test is shorter
    settings = ensure_shared_credential(
        make_settings(
            cpe_auth="digest",
            cpe_username=None,
            cpe_password=None,
            default_policies=True,
            data_dir=checkout / "var",
            campaign_tick_s=1.0,
        )
    )
    assert (checkout / "var" / "cpe-credential").exists()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(checkout),
        "LANG": "C.UTF-8",
        "ACS_DATABASE_URL": fresh_database,  # what the acs CLI of the README talks to
        "ACS_DATA_DIR": str(checkout / "var"),
    }
    blocks = covered_blocks()
    checks = {(s, p): c for s, p, c in CHECKS}
    async with running_acs(settings, fresh_database) as acs:
        pool = await asyncpg.create_pool(fresh_database, min_size=1, max_size=2)
        shell = Shell(checkout, env, acs.ports)
        world = World(acs, pool, shell)
        try:
            pace = KnockPace()
            for block, (section, prefix, check) in zip(blocks, CHECKS, strict=True):
                assert checks[(section, prefix)] is check
                await pace.before(block)
                if block.background:
                    out = await shell.start(block)
                    await check(world, block, str(out))
                else:
                    await check(world, block, await shell.run(block))
        finally:
            await shell.close()
            if world.admin is not None:
                await world.admin.close()
            await pool.close()
