"""The simulator's firmware image format: a header line naming the version the
image installs and the SHA-256 of its payload, then the payload.

    CPE-SIM-FIRMWARE version=2.0.1 sha256=<64 hex>\\n<payload>

A CPE verifies the hash before "flashing", so a corrupted or truncated
transfer is caught as real devices catch a bad signature.
"""

from __future__ import annotations

import hashlib
import os
import re

MAGIC = b"CPE-SIM-FIRMWARE"
_HEADER = re.compile(rb"CPE-SIM-FIRMWARE version=(\S+) sha256=([0-9a-f]{64})\n")


class BadImage(ValueError):
    pass


def make_image(version: str, payload_size: int = 64 * 1024, seed: bytes | None = None) -> bytes:
    payload = (seed or os.urandom(32)) * (payload_size // 32 + 1)
    payload = payload[:payload_size]
    digest = hashlib.sha256(payload).hexdigest()
    return MAGIC + f" version={version} sha256={digest}\n".encode() + payload


def verify_image(data: bytes) -> str:
    """The version the image installs; BadImage when it is not intact."""
    match = _HEADER.match(data[:200])
    if match is None:
        raise BadImage("not a firmware image (bad header)")
    payload = data[match.end() :]
    if hashlib.sha256(payload).hexdigest() != match.group(2).decode():
        raise BadImage("payload does not match its SHA-256")
    return match.group(1).decode()
