"""HTTP Basic and Digest authentication of CPEs (TR-069 section 3.4.4).

Credentials are kept as HA1 = MD5(username:realm:password), which checks both
schemes without storing the password.

Digest (RFC 7616, MD5, qop=auth):
- a nonce is a time stamp, 64 random bits and a signature with a key: one
  the ACS never issued is refused without a query. The workers of ``acs serve
  --workers N`` get the key from their parent, so a nonce one worker issued is
  good at the others;
- a captured header must not open a second session: each nonce count (nc) is
  good once and must be higher than every count seen for that nonce, kept in
  the ``AuthState`` all workers share (PostgreSQL for CPEs, whose later
  counts stay with the process that saw the first, acs/web/cpe_auth_state.py;
  another process answers that nonce with a new one, stale=true);
- the ``uri`` in the header must be the request's target, so a header
  captured on one URL cannot be spent on another;
- qop=auth is required: without it the header has no nonce count and no
  client nonce. Old CPE stacks that only speak RFC 2069 are let in with
  ``allow_no_qop``, each nonce then good for one request.

Wrong passwords and unknown usernames count against the username and the
client's address; past the limit both are refused for a back-off time
(``result.retry_after``: the caller answers 503 with Retry-After), whether
the password is right or not, so the refusal tells a guesser nothing. Every
401 has the same body; the log says why (``AuthResult.reason``). The first
401 of a Digest handshake is normal and not logged as a failure by the caller.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import math
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlsplit

from acs.core.auth_throttle import address_key, user_key
from acs.web.cpe_auth_state import AuthState, MemoryAuthState

NONCE_LIFETIME_S = 300
# what every 401 says, whatever the reason: the reason is for the log only
UNAUTHORIZED_TEXT = "authentication required\n"
THROTTLED_TEXT = "too many failed authentications, retry later\n"
_NC = re.compile(r"[0-9a-fA-F]{8}")
# control characters (NUL above all) can be neither a username nor a PostgreSQL text
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def ha1_of(username: str, realm: str, password: str) -> str:
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).hexdigest()


@dataclass(slots=True, frozen=True)
class Credential:
    username: str
    ha1: str
    device_id: str | None = None  # set: this username may only speak for that device


Lookup = Callable[[str], Awaitable[Credential | None]]


@dataclass(slots=True)
class AuthResult:
    ok: bool
    username: str | None = None
    device_id: str | None = None  # the device the credential is bound to, if any
    reason: str = ""
    # the client sent no credentials at all: the normal first leg of a handshake
    first_leg: bool = False
    challenge: list[str] = field(default_factory=list)
    # set: the username or the address is refused for this many more seconds
    retry_after: int | None = None


# a quoted value as "unrolled loop" (runs of plain characters between escapes):
# an alternation tried per character took 11 us of a 14 us header parse here
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("[^"\\]*(?:\\.[^"\\]*)*"|[^,]*)\s*(?:,|$)')
_QUOTED_PAIR = re.compile(r"\\(.)")


@functools.lru_cache(maxsize=64)  # 64 heads of at most 8 KB: bounded
def parse_auth_params(text: str) -> Mapping[str, str]:
    """The parameters of an Authorization header's credentials, names lowercased.
    Memoized (read-only): an Inform's header is parsed for the admission's
    claimed username, then for the Digest check, and a header never repeats
    beyond that (its nc and response change with every request)."""
    params: dict[str, str] = {}
    for key, raw in _PARAM.findall(text):
        value = raw.strip()
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
            if "\\" in value:  # a quoted-pair; CPEs seldom send one: no regex per value
                value = _QUOTED_PAIR.sub(r"\1", value)
        params[key.lower()] = value
    return MappingProxyType(params)


def uri_matches(digest_uri: str, target: str) -> bool:
    """The header's ``uri`` names this request: its origin-form target, or the
    absolute form of it (RFC 7616 3.4: the request-target as the client sent it)."""
    if digest_uri == target:
        return True
    if "://" not in digest_uri:
        return False
    parts = urlsplit(digest_uri)
    origin_form = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return origin_form == target


class CpeAuthenticator:
    def __init__(
        self,
        mode: str,
        realm: str,
        lookup: Lookup,
        *,
        secret: bytes | None = None,
        clock: Callable[[], float] = time.time,
        state: AuthState | None = None,
        allow_no_qop: bool = False,
    ) -> None:
        if mode not in ("digest", "basic", "any", "none"):
            raise ValueError(f"unknown CPE authentication mode {mode!r}")
        self.mode = mode
        self.realm = realm
        self.allow_no_qop = allow_no_qop
        self._lookup = lookup
        # the nonces' signing key, keyed once (each signature copies it)
        self._keyed = hmac.new(secret or os.urandom(32), digestmod=hashlib.sha256)
        self._clock = clock
        self.state: AuthState = state if state is not None else MemoryAuthState(clock=clock)

    # ------------------------------------------------------------------ nonces

    def _sign(self, body: str) -> str:
        mac = self._keyed.copy()  # keyed once (see acs.web.session_cookie)
        mac.update(body.encode())
        return mac.hexdigest()[:32]

    def make_nonce(self) -> str:
        # random per challenge: two CPEs challenged in the same second must not
        # share a nonce, whose counts would then interleave
        body = f"{int(self._clock())}.{secrets.token_hex(8)}"
        return base64.b64encode(f"{body}.{self._sign(body)}".encode()).decode()

    def _nonce_issued(self, nonce: str) -> int | None:
        """When we issued this nonce; None when we did not."""
        try:
            body, _, sig = base64.b64decode(nonce, validate=True).decode().rpartition(".")
            issued = int(body.split(".", 1)[0])
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
        return issued if hmac.compare_digest(sig.encode(), self._sign(body).encode()) else None

    def challenge(self, stale: bool = False) -> list[str]:
        headers = []
        if self.mode in ("digest", "any"):
            extra = ", stale=true" if stale else ""
            headers.append(
                f'Digest realm="{self.realm}", qop="auth", algorithm=MD5, '
                f'nonce="{self.make_nonce()}"{extra}'
            )
        if self.mode in ("basic", "any"):
            headers.append(f'Basic realm="{self.realm}"')
        return headers

    # ------------------------------------------------------------------ checks

    async def check(
        self, method: str, authorization: str | None, uri: str, remote: str | None = None
    ) -> AuthResult:
        """``uri``: the request target as received (path and query); ``remote``:
        the client's address, for counting failed passwords."""
        if self.mode == "none":
            return AuthResult(ok=True)
        if not authorization:
            return AuthResult(
                ok=False, reason="no credentials", first_leg=True, challenge=self.challenge()
            )
        scheme, _, rest = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "digest" and self.mode in ("digest", "any"):
            return await self._check_digest(method, rest, uri, remote)
        if scheme == "basic" and self.mode in ("basic", "any"):
            return await self._check_basic(rest, remote)
        return self._refuse(f"authentication scheme {scheme!r} is not accepted here")

    def _refuse(self, reason: str, username: str | None = None, stale: bool = False) -> AuthResult:
        return AuthResult(
            ok=False, username=username, reason=reason, challenge=self.challenge(stale)
        )

    @staticmethod
    def _keys(username: str, remote: str | None) -> list[str]:
        keys = [user_key(username)]
        if remote:
            keys.append(address_key(remote))
        return keys

    def _throttled(self, username: str, reason: str, seconds: float) -> AuthResult:
        return AuthResult(
            ok=False,
            username=username,
            reason=f"{reason}; username or address refused for {seconds:.0f} s more",
            retry_after=max(1, math.ceil(seconds)),
        )

    async def _wrong(self, username: str, remote: str | None, reason: str) -> AuthResult:
        blocked = await self.state.count_failure(self._keys(username, remote))
        if blocked > 0:
            return self._throttled(username, reason, blocked)
        return self._refuse(reason, username)

    async def _check_basic(self, token: str, remote: str | None) -> AuthResult:
        try:
            username, _, password = (
                base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
            )
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return self._refuse("malformed Basic credentials")
        if _CONTROL.search(username):
            return self._refuse("control characters in the Basic username")
        cred = await self._lookup(username)
        if cred is None:
            return await self._wrong(username, remote, "unknown username")
        if not hmac.compare_digest(ha1_of(username, self.realm, password), cred.ha1):
            return await self._wrong(username, remote, "wrong password")
        blocked = await self.state.blocked_s(self._keys(username, remote))
        if blocked > 0:
            return self._throttled(username, "right password while throttled", blocked)
        return AuthResult(ok=True, username=username, device_id=cred.device_id)

    async def _check_digest(
        self, method: str, text: str, target: str, remote: str | None
    ) -> AuthResult:
        p = parse_auth_params(text)
        username, nonce, uri, response = (
            p.get(k) for k in ("username", "nonce", "uri", "response")
        )
        if not (username and nonce and uri and response):
            return self._refuse("incomplete Digest credentials", username)
        if _CONTROL.search(username):
            return self._refuse("control characters in the Digest username")
        if p.get("realm", self.realm) != self.realm:
            return self._refuse(f"wrong realm {p.get('realm')!r}", username)
        if p.get("algorithm", "MD5").upper() != "MD5":
            return self._refuse(f"unsupported algorithm {p.get('algorithm')!r}", username)
        if not uri_matches(uri, target):
            return self._refuse(f"Digest uri {uri!r} is not the request target", username)
        qop = p.get("qop")
        nc_text, cnonce = p.get("nc", ""), p.get("cnonce", "")
        if qop:
            if qop != "auth":
                return self._refuse(f"unsupported qop {qop!r}", username)
            if not _NC.fullmatch(nc_text) or not cnonce:
                return self._refuse("qop=auth without a valid nc and cnonce", username)
            nc = int(nc_text, 16)
        elif self.allow_no_qop:
            nc = 1  # no count to compare: the nonce is good for one request
        else:
            return self._refuse("Digest without qop=auth is not accepted", username)
        issued = self._nonce_issued(nonce)
        if issued is None:
            return self._refuse("nonce was not issued by this ACS", username)
        cred = await self._lookup(username)
        if cred is None:
            return await self._wrong(username, remote, "unknown username")
        ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
        if qop:
            expected = hashlib.md5(f"{cred.ha1}:{nonce}:{nc_text}:{cnonce}:{qop}:{ha2}".encode())
        else:  # RFC 2069 style, still sent by old CPE stacks
            expected = hashlib.md5(f"{cred.ha1}:{nonce}:{ha2}".encode())
        if not hmac.compare_digest(expected.hexdigest().encode(), response.lower().encode()):
            return await self._wrong(username, remote, "wrong password (digest mismatch)")
        expires = issued + NONCE_LIFETIME_S
        if self._clock() > expires:
            # right password, old nonce: ask again with stale=true so the CPE
            # retries without prompting for credentials
            return self._refuse("stale nonce", username, stale=True)
        blocked, fresh = await self.state.use_nonce(
            self._keys(username, remote), nonce, nc, expires
        )
        if blocked > 0:
            return self._throttled(username, "right password while throttled", blocked)
        if fresh is None:  # another process keeps this nonce's counts: a new nonce
            return self._refuse("nonce is held by another process", username, stale=True)
        if not fresh:
            return self._refuse(f"nonce count {nc_text or '(none)'} was used already", username)
        return AuthResult(ok=True, username=username, device_id=cred.device_id)
