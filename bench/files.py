"""File server throughput: 100 CPEs downloading a 32 MB image with Range, on loopback.

Runs the real ACS (`acs serve`, a subprocess) on a fresh database
``bench_files`` created on the admin DSN of ACS_BENCH_DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432/postgres) and dropped afterwards, creates
an admin token with `acs token create`, uploads a random image through the API
(PUT /api/v1/files/{name}), then lets N concurrent clients download it from
the file server:

- half fetch the whole image in 4 sequential ranges (``Range: bytes=a-b``),
  as a CPE with a small download buffer does;
- half resume from the middle (``Range: bytes=<size/2>-`` with ``If-Range``
  and the ETag), as a CPE does after an interrupted download.

Every client hashes what it received (SHA-256) and compares it with the hash
of the bytes it asked for; a mismatch fails the run. Measured: aggregate MB/s
over the download phase (bytes received / wall time), CPU seconds of the
client (this process) and of the server process in that phase.

The ceiling is the same client against a bare aiohttp app serving the same
file from disk with ``web.FileResponse`` (sendfile, Range), also a
subprocess, so the ratio shows what our server costs on top of the machine,
the client and aiohttp itself.

Then the same with ACS_FILE_STORE=postgres (the image's bytes in PostgreSQL,
a disk cache per host, acs/store/blobs.py): the image's chunks read straight
out of PostgreSQL (what a file server without the cache would pay for every
Range), one CPE's whole download from a cold cache (the fill from PostgreSQL
included: what the first CPE of a campaign on a host waits), the N clients
on a cold cache (they queue behind one fill) and on the warm cache.

    python -m bench.files            # 100 clients, 32 MB, about a minute
    python -m bench.files --quick    # 10 clients, 4 MB
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench import common

BIN = Path(sys.executable).parent
GOAL_MB_S = 500.0
# the first CPE asking a host for an image pays its fill from PostgreSQL:
# 32 MB in under half a second
GOAL_COLD_MB_S = 64.0
SCENARIO = "file-server"
NAME = "bench-image.bin"
RANGES_PER_CLIENT = 4
MB = 1024 * 1024


# ------------------------------------------------------------------ plumbing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def fresh_database(admin_dsn: str, name: str = "bench_files") -> Iterator[str]:
    dsn = asyncio.run(common.fresh_database(name, admin_dsn))
    try:
        yield dsn
    finally:
        asyncio.run(common.drop_database(name, admin_dsn))


def _wait_for(proc: subprocess.Popen[str], marker: str, timeout: float = 60) -> str:
    """Read the child's output until a line starts with ``marker``; that line."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(marker):
            return line
        if time.monotonic() > deadline:
            break
    raise RuntimeError(f"server did not start ({marker!r} not seen):\n{''.join(seen)[-2000:]}")


@contextlib.contextmanager
def running(cmd: list[str], env: dict[str, str], marker: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        _wait_for(proc, marker)
        # keep draining its output so a chatty server never blocks on a full pipe
        drain = proc.stdout
        assert drain is not None
        threading.Thread(target=drain.read, daemon=True).start()
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ the ceiling server


def ceiling_server(path: str, port: int) -> None:
    """A bare aiohttp app: GET /<anything> is the file, via web.FileResponse."""
    from aiohttp import web

    async def serve(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    print("listening", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# ------------------------------------------------------------------ the clients


@dataclass(slots=True)
class Plan:
    """What one client asks for: a list of (first, last) byte ranges, in order."""

    ranges: list[tuple[int, int]]
    resume: bool
    expected_sha256: str


def plans(image: bytes, clients: int) -> list[Plan]:
    size = len(image)
    step = -(-size // RANGES_PER_CLIENT)
    whole = [(a, min(a + step, size) - 1) for a in range(0, size, step)]
    whole_hash = hashlib.sha256(image).hexdigest()
    half = size // 2
    tail_hash = hashlib.sha256(image[half:]).hexdigest()
    return [
        Plan(whole, False, whole_hash) if i % 2 == 0 else Plan([(half, size - 1)], True, tail_hash)
        for i in range(clients)
    ]


async def download(http: aiohttp.ClientSession, url: str, plan: Plan, etag: str | None) -> int:
    digest = hashlib.sha256()
    got = 0
    for first, last in plan.ranges:
        headers = {"Range": f"bytes={first}-{last}" if not plan.resume else f"bytes={first}-"}
        if plan.resume and etag:
            headers["If-Range"] = etag
        async with http.get(url, headers=headers) as resp:
            if resp.status != 206:
                raise RuntimeError(f"{url} {headers}: HTTP {resp.status}, expected 206")
            async for chunk in resp.content.iter_any():
                digest.update(chunk)
                got += len(chunk)
    if digest.hexdigest() != plan.expected_sha256:
        raise RuntimeError(f"{url}: received bytes do not match (ranges {plan.ranges})")
    return got


async def run_clients(url: str, work: list[Plan], server_pid: int) -> dict[str, float]:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        async with http.head(url) as head:  # the ETag a resuming CPE kept
            etag = head.headers.get("ETag")
        server_cpu0, client_cpu0 = common.cpu_seconds(server_pid), time.process_time()
        start = time.perf_counter()
        received = await asyncio.gather(*(download(http, url, p, etag) for p in work))
        wall = time.perf_counter() - start
        server_cpu = common.cpu_seconds(server_pid) - server_cpu0
        client_cpu = time.process_time() - client_cpu0
    total = sum(received)
    return {
        "bytes": total,
        "wall_s": wall,
        "mb_s": total / MB / wall,
        "server_cpu_s": server_cpu,
        "client_cpu_s": client_cpu,
        "requests": sum(len(p.ranges) for p in work),
    }


# ------------------------------------------------------------------ the two servers


def measure_acs(
    image_path: Path,
    work: list[Plan],
    admin_dsn: str,
    tmp: Path,
    db_name: str,
    store: str = "local",
) -> dict[str, dict[str, float]]:
    """The download figures of one ACS: {"disk": ...} for the local store; for
    postgres {"db_read", "cold_one", "cold", "warm"}."""
    with fresh_database(admin_dsn, db_name) as dsn:
        api_port, files_port = free_port(), free_port()
        env = dict(
            os.environ,
            ACS_DATABASE_URL=dsn,
            ACS_DATA_DIR=str(tmp / "acs"),
            ACS_HOST="127.0.0.1",
            ACS_CWMP_PORT=str(free_port()),
            ACS_API_PORT=str(api_port),
            ACS_FILES_PORT=str(files_port),
            ACS_STUN_PORT="0",
            ACS_LOG_LEVEL="WARNING",
            ACS_FILE_STORE=store,
        )
        # a fresh database: the CLI creates an installation only when told to
        subprocess.run([str(BIN / "acs"), "migrate"], env=env, check=True, capture_output=True)
        token = subprocess.run(
            [str(BIN / "acs"), "token", "create", "--name", "bench", "--role", "admin"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        with running([str(BIN / "acs"), "serve"], env, "Files") as acs:
            asyncio.run(
                upload(f"http://127.0.0.1:{api_port}/api/v1/files/{NAME}", token, image_path)
            )
            url = f"http://127.0.0.1:{files_port}/{NAME}"
            if store == "local":
                return {"disk": asyncio.run(run_clients(url, work, acs.pid))}
            cache = tmp / "acs" / "files" / ".cache"
            out = {"db_read": asyncio.run(read_chunks(dsn))}
            shutil.rmtree(cache)  # as on a host that did not take the upload
            size = image_path.stat().st_size
            one = [
                Plan([(0, size - 1)], False, hashlib.sha256(image_path.read_bytes()).hexdigest())
            ]
            out["cold_one"] = asyncio.run(run_clients(url, one, acs.pid))
            shutil.rmtree(cache)
            out["cold"] = asyncio.run(run_clients(url, work, acs.pid))
            out["warm"] = asyncio.run(run_clients(url, work, acs.pid))
            return out


async def read_chunks(dsn: str) -> dict[str, float]:
    """The image's chunks read out of PostgreSQL in order, as the cache fill does."""
    import asyncpg

    from acs.store import blobs

    conn = await asyncpg.connect(dsn)
    try:
        file_id = await conn.fetchval("SELECT id FROM files WHERE name = $1", NAME)
        start = time.perf_counter()
        total = 0
        async for data in blobs.chunks(conn, "file", file_id):
            total += len(data)
        wall = time.perf_counter() - start
    finally:
        await conn.close()
    return {"bytes": total, "wall_s": wall, "mb_s": total / MB / wall}


async def upload(url: str, token: str, path: Path) -> None:
    async with aiohttp.ClientSession() as http:
        with path.open("rb") as body:
            async with http.put(
                url, data=body, headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"upload: HTTP {resp.status}: {await resp.text()}")


def measure_ceiling(image_path: Path, work: list[Plan]) -> dict[str, float]:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.files", "--ceiling-server", str(image_path), str(port)]
    with running(cmd, dict(os.environ), "listening") as proc:
        return asyncio.run(run_clients(f"http://127.0.0.1:{port}/{NAME}", work, proc.pid))


# ------------------------------------------------------------------ report


def report(
    ours: dict[str, float],
    ceiling: dict[str, float],
    clients: int,
    size: int,
    shared: dict[str, dict[str, float]] | None = None,
) -> dict:
    print(
        f"{clients} clients, {size / MB:.0f} MB image: half in {RANGES_PER_CLIENT} ranges, "
        "half resuming from the middle (If-Range)"
    )
    print("| server | MB/s | wall s | MB received | requests | server CPU s | client CPU s |")
    print("|---|---|---|---|---|---|---|")
    for label, r in (("ACS file server", ours), ("bare aiohttp FileResponse", ceiling)):
        print(
            f"| {label} | {r['mb_s']:,.0f} | {r['wall_s']:.2f} | {r['bytes'] / MB:,.0f} "
            f"| {r['requests']:.0f} | {r['server_cpu_s']:.2f} | {r['client_cpu_s']:.2f} |"
        )
    ratio = ours["mb_s"] / ceiling["mb_s"]
    met = ours["mb_s"] >= GOAL_MB_S
    print(
        f"ACS / ceiling: {ratio:.2f}; goal >= {GOAL_MB_S:.0f} MB/s: {'met' if met else 'NOT met'}"
    )
    rows = [
        {
            "target": f"file server: {clients} concurrent Range downloads of a "
            f"{size / MB:.0f} MB image",
            "goal": f">= {GOAL_MB_S:.0f} MB/s on loopback",
            "measured": f"{ours['mb_s']:,.0f} MB/s (ceiling {ceiling['mb_s']:,.0f} MB/s)",
            "value": round(ours["mb_s"], 1),
            "met": met,
            "ratio": f"{ratio:.2f}",
            "notes": (
                f"half {RANGES_PER_CLIENT} ranges, half resume from the middle; "
                f"SHA-256 verified; server CPU {ours['server_cpu_s']:.1f} s, client CPU "
                f"{ours['client_cpu_s']:.1f} s in {ours['wall_s']:.1f} s; ceiling: bare "
                "aiohttp FileResponse, same client"
            ),
        }
    ]
    if shared is not None:
        rows += shared_rows(shared, ours, clients, size)
    return {"scenario": SCENARIO, "rows": rows}


def shared_rows(
    shared: dict[str, dict[str, float]], disk: dict[str, float], clients: int, size: int
) -> list[dict]:
    """ACS_FILE_STORE=postgres: cold and warm, against the disk path of the same run."""
    db, one, cold, warm = shared["db_read"], shared["cold_one"], shared["cold"], shared["warm"]
    print(f"ACS_FILE_STORE=postgres, same image and clients ({size / MB:.0f} MB):")
    print("| case | MB/s | wall s | server CPU s |")
    print("|---|---|---|---|")
    print(f"| chunks read from PostgreSQL (no cache) | {db['mb_s']:,.0f} | {db['wall_s']:.2f} | |")
    for label, r in (
        ("1 client, cold cache (fill included)", one),
        (f"{clients} clients, cold cache", cold),
        (f"{clients} clients, warm cache", warm),
    ):
        print(f"| {label} | {r['mb_s']:,.0f} | {r['wall_s']:.2f} | {r['server_cpu_s']:.2f} |")
    warm_ratio = warm["mb_s"] / disk["mb_s"]
    print(f"warm / disk: {warm_ratio:.2f}")
    common_notes = (
        f"disk path in the same run {disk['mb_s']:,.0f} MB/s; chunks read straight from "
        f"PostgreSQL {db['mb_s']:,.0f} MB/s ({db['wall_s']:.2f} s for the image)"
    )
    return [
        {
            "target": f"file server, ACS_FILE_STORE=postgres: the first download of a "
            f"{size / MB:.0f} MB image on a host (cold cache, filled from PostgreSQL)",
            "goal": f">= {GOAL_COLD_MB_S:.0f} MB/s",
            "measured": f"{one['mb_s']:,.0f} MB/s ({one['wall_s']:.2f} s)",
            "value": round(one["mb_s"], 1),
            "met": one["mb_s"] >= GOAL_COLD_MB_S,
            "ratio": f"{one['mb_s'] / disk['mb_s']:.2f}",
            "notes": f"{common_notes}; {clients} clients on a cold cache "
            f"{cold['mb_s']:,.0f} MB/s (they wait for one fill)",
        },
        {
            "target": f"file server, ACS_FILE_STORE=postgres: {clients} concurrent Range "
            f"downloads of a {size / MB:.0f} MB image, warm cache",
            "goal": f">= {GOAL_MB_S:.0f} MB/s on loopback",
            "measured": f"{warm['mb_s']:,.0f} MB/s (disk path {disk['mb_s']:,.0f} MB/s)",
            "value": round(warm["mb_s"], 1),
            "met": warm["mb_s"] >= GOAL_MB_S,
            "ratio": f"{warm_ratio:.2f}",
            "notes": f"served from this host's cached copy, as the disk path; {common_notes}",
        },
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10 clients, 4 MB")
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--size-mb", type=int, default=32)
    ap.add_argument("--database", default="bench_files", help="scratch database (dropped)")
    ap.add_argument("--ceiling-server", nargs=2, metavar=("PATH", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.ceiling_server:
        ceiling_server(args.ceiling_server[0], int(args.ceiling_server[1]))
        return
    clients, size = (10, 4 * MB) if args.quick else (args.clients, args.size_mb * MB)
    admin_dsn = common.admin_dsn()
    tmp = Path(tempfile.mkdtemp(prefix="acs-bench-files-"))
    try:
        image = os.urandom(size)
        image_path = tmp / NAME
        image_path.write_bytes(image)
        work = plans(image, clients)
        del image
        ours = measure_acs(image_path, work, admin_dsn, tmp, args.database)["disk"]
        ceiling = measure_ceiling(image_path, work)
        shutil.rmtree(tmp / "acs", ignore_errors=True)
        shared = measure_acs(image_path, work, admin_dsn, tmp, args.database, store="postgres")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(report(ours, ceiling, clients, size, shared)))


if __name__ == "__main__":
    main()
