"""The `acs` command."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit, urlunsplit

import click

from acs import logs, loops
from acs.config import Settings

if TYPE_CHECKING:
    import asyncpg

T = TypeVar("T")


class NoDatabase(click.ClickException):
    """The command would have had to create a database nobody asked for."""


def _masked(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _with_database(
    settings: Settings, work: Callable[[str], Awaitable[T]], *, create: bool = False
) -> T:
    """Run ``work(dsn)`` against the database the ACS of these settings uses.

    Without ACS_DATABASE_URL that is the embedded server of ACS_DATA_DIR: the
    running one, else started for this command. A data dir with no database
    is refused unless ``create`` (``acs migrate``): a token or user written to
    a second, new installation would be refused by the running ACS.
    Which database was used goes to stderr; stdout stays the command's output.
    """
    from acs.store.db import UNAVAILABLE, EmbeddedPostgres, has_cluster, postmaster_running

    async def main() -> T:
        if settings.database_url:
            where = _masked(settings.database_url)
            click.echo(f"database: {where}", err=True)
            try:
                return await work(settings.database_url)
            except UNAVAILABLE as exc:
                raise click.ClickException(f"cannot use the database {where}: {exc}") from None
        pgdata = settings.pgdata_dir.resolve()
        if not has_cluster(pgdata) and not create:
            raise NoDatabase(
                f"no ACS database in {pgdata} (ACS_DATA_DIR={settings.data_dir}). "
                "Run this command where the running ACS runs, or set ACS_DATA_DIR to its "
                "data dir, or ACS_DATABASE_URL to its PostgreSQL; to make a new "
                "installation here, run `acs migrate` (or `acs serve`) first."
            )
        how = "running" if postmaster_running(pgdata) else "started for this command"
        click.echo(f"database: embedded, data in {pgdata} ({how})", err=True)
        embedded = EmbeddedPostgres()
        try:
            return await work(embedded.start(pgdata))
        finally:
            embedded.stop()

    return asyncio.run(main())


async def _require_schema(conn: asyncpg.Connection) -> None:
    """Refuse a database the ACS never set up (the wrong ACS_DATABASE_URL, say)."""
    if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
        raise NoDatabase(
            "this database has no ACS tables: is it the one the ACS uses? "
            "`acs migrate` (or `acs serve`) sets a new one up"
        )


@click.group()
@click.option("--log-level", default="INFO", envvar="ACS_LOG_LEVEL", show_default=True)
def main(log_level: str) -> None:
    """TR-069 (CWMP) auto-configuration server."""
    logs.setup(log_level)


@main.command()
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=None,
    help="server processes sharing the ports (default: ACS_WORKERS, else 1)",
)
def serve(workers: int | None) -> None:
    """Migrate the database and serve CWMP, the API and files (settings: ACS_* variables)."""
    from acs.web.launch import serve as run
    from acs.web.tls import TlsConfigError

    settings = Settings() if workers is None else Settings(workers=workers)
    try:
        loops.run(run(settings), settings.event_loop)
    except TlsConfigError as exc:  # a setting to fix, not a crash to debug
        raise click.ClickException(str(exc)) from None


@main.command()
def migrate() -> None:
    """Apply the database migrations that are not applied yet."""
    from acs.store.db import connect
    from acs.store.db import migrate as apply

    async def work(dsn: str) -> list[str]:
        conn = await connect(dsn)
        try:
            return await apply(conn)
        finally:
            await conn.close()

    applied = _with_database(Settings(), work, create=True)
    click.echo("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))


@main.group()
def files() -> None:
    """Uploaded images and CPE backups."""


@files.command(name="import-local")
def files_import_local() -> None:
    """Copy the images and backups stored on this host's disk into PostgreSQL
    (before setting ACS_FILE_STORE=postgres on every host)."""
    from acs.store import blobs
    from acs.store.db import connect

    settings = Settings()

    async def work(dsn: str) -> dict[str, dict[str, list[str]]]:
        conn = await connect(dsn)
        try:
            await _require_schema(conn)
            return {
                "images": await blobs.import_local(conn, "file", settings.files_dir),
                "backups": await blobs.import_local(conn, "backup", settings.backups_dir),
            }
        finally:
            await conn.close()

    result = _with_database(settings, work)
    for what, outcome in result.items():
        click.echo(
            f"{what}: {len(outcome['copied'])} copied, {len(outcome['missing'])} missing on disk,"
            f" {len(outcome['mismatch'])} not matching their catalog row"
        )
        for name in outcome["missing"] + outcome["mismatch"]:
            click.echo(f"  not copied: {name}", err=True)
    if any(o["missing"] or o["mismatch"] for o in result.values()):
        sys.exit(1)


@main.group(name="cpe-credential")
def cpe_credential() -> None:
    """Per-device CPE credentials (HTTP Basic/Digest towards the ACS)."""


@cpe_credential.command(name="set")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True)
@click.option("--device-id", default=None, help="only this device may use the credential")
def credential_set(username: str, password: str, device_id: str | None) -> None:
    from acs.store import credentials
    from acs.store.db import connect

    settings = Settings()

    async def work(dsn: str) -> None:
        conn = await connect(dsn)
        try:
            await _require_schema(conn)
            await credentials.set_credential(
                conn, username, password, settings.cpe_auth_realm, device_id
            )
        finally:
            await conn.close()

    _with_database(settings, work)
    click.echo(f"credential {username!r} stored")


@cpe_credential.command(name="delete")
@click.argument("username")
def credential_delete(username: str) -> None:
    from acs.store import credentials
    from acs.store.db import connect

    async def work(dsn: str) -> bool:
        conn = await connect(dsn)
        try:
            await _require_schema(conn)
            return await credentials.delete_credential(conn, username)
        finally:
            await conn.close()

    found = _with_database(Settings(), work)
    click.echo("deleted" if found else f"no credential {username!r}")
    raise SystemExit(0 if found else 1)


@main.group()
def token() -> None:
    """Operator API tokens (admin, operator, viewer)."""


@token.command(name="create")
@click.option("--name", required=True)
@click.option("--role", type=click.Choice(["admin", "operator", "viewer"]), required=True)
def token_create(name: str, role: str) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from acs.store import tokens
    from acs.store.db import connect, migrate

    async def work(dsn: str) -> str:
        conn = await connect(dsn)
        try:
            await _require_schema(conn)
            await migrate(conn)
            return await tokens.create_token(conn, name, role)
        finally:
            await conn.close()

    try:
        secret = _with_database(Settings(), work)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    click.echo(secret)


@token.command(name="list")
def token_list() -> None:
    """List tokens: name, role, created, last used, revoked."""
    from acs.store import tokens
    from acs.store.db import connect

    async def work(dsn: str) -> list[tokens.ApiToken]:
        conn = await connect(dsn)
        try:
            await _require_schema(conn)
            return await tokens.list_tokens(conn)
        finally:
            await conn.close()

    for t in _with_database(Settings(), work):
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
        click.echo(
            f"{t.name}\t{t.role}\tcreated {t.created_at:%Y-%m-%d %H:%M}\tused {used}\t{state}"
        )


@token.command(name="revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Revoke a token by name."""
    from acs.store import tokens
    from acs.store.db import connect

    async def work(dsn: str) -> bool:
        conn = await connect(dsn)
        try:
            await _require_schema(conn)
            return await tokens.revoke_token(conn, name)
        finally:
            await conn.close()

    if not _with_database(Settings(), work):
        raise click.ClickException(f"no active token named {name!r}")
    click.echo(f"revoked {name}")


@main.group()
def user() -> None:
    """Web UI users (admin, operator, viewer: the roles of API tokens)."""


def _read_password(confirm: bool, from_stdin: bool) -> str:
    if from_stdin:
        # for scripts: the password never shows in the process list or history
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=confirm)


@user.command(name="create")
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "operator", "viewer"]), required=True)
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def user_create(username: str, role: str, password_stdin: bool) -> None:
    """Create a user; asks for the password (at least 10 characters)."""
    from acs.core.passwords import PasswordRejected
    from acs.services import accounts
    from acs.store.db import connect, migrate

    password = _read_password(True, password_stdin)

    async def work(dsn: str) -> None:
        conn = await connect(dsn)
        try:
            await _require_schema(conn)
            await migrate(conn)
            await accounts.create_user(conn, username, password, role)
        finally:
            await conn.close()

    try:
        _with_database(Settings(), work)
    except (PasswordRejected, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"user {username!r} created ({role})")


@user.command(name="passwd")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def user_passwd(username: str, password_stdin: bool) -> None:
    """Set a user's password; their open sessions end."""
    from acs.core.passwords import PasswordRejected
    from acs.services import accounts
    from acs.store.db import connect

    password = _read_password(True, password_stdin)

    async def work(dsn: str) -> bool:
        conn = await connect(dsn)
        try:
            await _require_schema(conn)
            return await accounts.change_password(conn, username, password)
        finally:
            await conn.close()

    try:
        found = _with_database(Settings(), work)
    except PasswordRejected as err:
        raise click.ClickException(str(err)) from None
    if not found:
        raise click.ClickException(f"no user named {username!r}")
    click.echo(f"password of {username!r} changed; their sessions ended")


@user.command(name="delete")
@click.argument("username")
def user_delete(username: str) -> None:
    """Delete a user and end their sessions."""
    from acs.store import users
    from acs.store.db import connect

    async def work(dsn: str) -> bool:
        conn = await connect(dsn)
        try:
            await _require_schema(conn)
            return await users.delete_user(conn, username)
        finally:
            await conn.close()

    if not _with_database(Settings(), work):
        raise click.ClickException(f"no user named {username!r}")
    click.echo(f"deleted {username}")


@user.command(name="list")
def user_list() -> None:
    """List users: name, role, last sign-in."""
    from acs.store import users
    from acs.store.db import connect

    async def work(dsn: str) -> list[users.User]:
        conn = await connect(dsn)
        try:
            await _require_schema(conn)
            return await users.list_users(conn)
        finally:
            await conn.close()

    for u in _with_database(Settings(), work):
        seen = f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "never"
        click.echo(f"{u.username}\t{u.role}\tlast sign-in {seen}")
