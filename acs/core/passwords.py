"""Operator passwords: Argon2id hashes and the rules a new password must meet.

Pure CPU, no I/O: callers run ``hash_password`` and ``verify_password`` in a
worker thread, since each takes tens of milliseconds by design.
"""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
# argon2 accepts any length, but hashing megabytes on every login attempt is a
# cheap way to burn our CPU
MAX_LENGTH = 1024
USERNAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")

# argon2-cffi's defaults follow RFC 9106's second recommended profile
# (Argon2id, 64 MiB, 3 passes); the hash string records them, so raising them
# later re-hashes each password at its owner's next login.
_hasher = PasswordHasher()
# verified against when the username is unknown, so that a miss costs as long
# as a wrong password and response times do not reveal which users exist
_DUMMY_HASH = _hasher.hash("no user has this password, it only burns time")


class PasswordRejected(ValueError):
    """A password or username that breaks a rule; the message says which."""


def check_username(username: str) -> str:
    if not USERNAME.fullmatch(username):
        raise PasswordRejected("a username has 1 to 64 letters, digits or the characters _ . @ -")
    return username


def check_password(password: str, username: str) -> str:
    if len(password) < MIN_LENGTH:
        raise PasswordRejected(f"a password has at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise PasswordRejected(f"a password has at most {MAX_LENGTH} characters")
    if password.strip().lower() == username.lower():
        raise PasswordRejected("the password may not be the username")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; with no hash (unknown user) it still
    spends the time of a real check and returns False."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)
