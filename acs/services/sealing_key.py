"""This installation's sealing key: ACS_SECRETS_KEY, else data_dir/secrets.key.

The key lives outside PostgreSQL on purpose: a dump of the database (a
backup, a replica) then holds sealed secrets only. Losing the key file loses
the sealed values; the ACS then sets fresh ones (policies converge again) and
knocks with the configured default credentials meanwhile.
"""

from __future__ import annotations

import functools
import os
import secrets
from pathlib import Path

from acs.config import Settings
from acs.core.sealing import Sealer

KEY_FILE = "secrets.key"


def sealer(settings: Settings) -> Sealer:
    """The sealer of these settings, the same object for every caller."""
    if settings.secrets_key is not None:
        return _from_secret(settings.secrets_key.encode())
    return _from_file(str(Path(settings.data_dir).resolve() / KEY_FILE))


@functools.lru_cache(maxsize=16)
def _from_secret(secret: bytes) -> Sealer:
    return Sealer(secret)


@functools.lru_cache(maxsize=16)
def _from_file(path: str) -> Sealer:
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    if not file.exists():
        # written aside, then linked into place: several workers starting at
        # once end with one key, and none reads a half-written file
        aside = file.with_name(f".{KEY_FILE}.{os.getpid()}")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(aside, file)
        except FileExistsError:
            pass
        finally:
            aside.unlink()
    text = file.read_text().strip()
    if len(text) < 32:
        raise ValueError(f"{file} holds no sealing key (expected 32 or more characters)")
    return Sealer(text.encode())
