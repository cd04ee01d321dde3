"""`acs serve`: one process serving the three listeners, or a parent and its workers.

The choice lives here, above both: acs/web/server.py runs one ACS and knows
nothing of workers; acs/web/workers.py supervises several, each running the
server. Neither imports the other's caller.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from acs.config import Settings
from acs.store.db import EmbeddedPostgres
from acs.web.server import serve_until_signalled
from acs.web.workers import supervise


def ensure_shared_credential(settings: Settings) -> Settings:
    """Secure by default: with CPE auth on and no credential set, make one and keep it."""
    if settings.cpe_auth == "none" or settings.cpe_username is not None:
        return settings
    path = Path(settings.data_dir) / "cpe-credential"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"cpe:{secrets.token_urlsafe(12)}\n")
        path.chmod(0o600)
    username, _, password = path.read_text().strip().partition(":")
    return settings.model_copy(update={"cpe_username": username, "cpe_password": password})


async def serve(settings: Settings) -> None:
    settings = ensure_shared_credential(settings)
    if settings.workers > 1:
        await supervise(settings)
        return
    embedded: EmbeddedPostgres | None = None
    dsn = settings.database_url
    if dsn is None:
        embedded = EmbeddedPostgres()
        dsn = embedded.start(settings.pgdata_dir.resolve())
    try:
        await serve_until_signalled(settings, dsn, embedded=embedded is not None)
    finally:
        if embedded is not None:
            embedded.stop()
