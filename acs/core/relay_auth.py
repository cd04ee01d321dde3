"""Signing host-to-host relay requests and answers with the cluster's shared secret.

A relayed CWMP request carries who the CPE is (its address, scheme, the
username the first host verified), and the owning host believes all of it, so
the whole request is signed, not just a token shown: HMAC-SHA256 over the
method, path, a digest of the body, those headers, a timestamp and a random
nonce. The receiver refuses a signature outside ``WINDOW_S`` of its clock and
a nonce it has seen (kept in PostgreSQL for the window), so a captured request
cannot be replayed. The answer is signed over the request's nonce, its status
and body digest: the relaying host knows it came from a host of the cluster
and belongs to this request (mutual).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

# how far the two hosts' clocks and the hop may put a signature off
WINDOW_S = 60.0


def key_of(cluster_secret: str) -> bytes:
    # a key of its own: nothing signed here helps forge cookies or Digest nonces
    return hmac.new(cluster_secret.encode(), b"acs host relay", hashlib.sha256).digest()


def new_nonce() -> str:
    return secrets.token_urlsafe(18)


def _mac(key: bytes, *parts: str) -> str:
    text = "\n".join(parts).encode("utf-8", "surrogateescape")
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def sign_request(
    key: bytes,
    method: str,
    path: str,
    body: bytes,
    timestamp: int,
    nonce: str,
    carried: tuple[str, ...],
) -> str:
    digest = hashlib.sha256(body).hexdigest()
    return _mac(key, "request", method.upper(), path, digest, str(timestamp), nonce, *carried)


def sign_answer(key: bytes, nonce: str, status: int, body: bytes) -> str:
    return _mac(key, "answer", nonce, str(status), hashlib.sha256(body).hexdigest())


def verify(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogateescape"))


def fresh(timestamp: int, now: float) -> bool:
    return abs(now - timestamp) <= WINDOW_S
