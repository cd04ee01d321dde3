"""HTTP Basic and Digest authentication of CPEs (TR-069 section 3.4.4).

Credentials are kept as HA1 = MD5(username:realm:password), which checks both
schemes without storing the password. Digest nonces are stateless (a time
stamp signed with a key): one process makes its own; the workers of
``acs serve --workers N`` get one from their parent, so a nonce one worker
issued is good at the others. A restart only costs the CPE one more 401. The
first 401 of a Digest handshake is normal and not logged as a failure by the
caller.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

NONCE_LIFETIME_S = 300


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


_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,]*)\s*(?:,|$)')


def parse_auth_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, raw in _PARAM.findall(text):
        value = raw.strip()
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[key.lower()] = value
    return params


class CpeAuthenticator:
    def __init__(
        self,
        mode: str,
        realm: str,
        lookup: Lookup,
        *,
        secret: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if mode not in ("digest", "basic", "any", "none"):
            raise ValueError(f"unknown CPE authentication mode {mode!r}")
        self.mode = mode
        self.realm = realm
        self._lookup = lookup
        self._secret = secret or os.urandom(32)
        self._clock = clock

    # ------------------------------------------------------------------ nonces

    def make_nonce(self) -> str:
        stamp = str(int(self._clock()))
        sig = hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:32]
        return base64.b64encode(f"{stamp}:{sig}".encode()).decode()

    def _nonce_state(self, nonce: str) -> str:
        """'ok', 'stale' (ours but too old) or 'bad'."""
        try:
            stamp, sig = base64.b64decode(nonce, validate=True).decode().split(":", 1)
            issued = int(stamp)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return "bad"
        good = hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(sig, good):
            return "bad"
        return "ok" if self._clock() - issued <= NONCE_LIFETIME_S else "stale"

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

    async def check(self, method: str, authorization: str | None) -> AuthResult:
        if self.mode == "none":
            return AuthResult(ok=True)
        if not authorization:
            return AuthResult(
                ok=False, reason="no credentials", first_leg=True, challenge=self.challenge()
            )
        scheme, _, rest = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "digest" and self.mode in ("digest", "any"):
            return await self._check_digest(method, rest)
        if scheme == "basic" and self.mode in ("basic", "any"):
            return await self._check_basic(rest)
        return self._refuse(f"authentication scheme {scheme!r} is not accepted here")

    def _refuse(self, reason: str, username: str | None = None, stale: bool = False) -> AuthResult:
        return AuthResult(
            ok=False, username=username, reason=reason, challenge=self.challenge(stale)
        )

    async def _check_basic(self, token: str) -> AuthResult:
        try:
            username, _, password = (
                base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
            )
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return self._refuse("malformed Basic credentials")
        cred = await self._lookup(username)
        if cred is None:
            return self._refuse("unknown username", username)
        if not hmac.compare_digest(ha1_of(username, self.realm, password), cred.ha1):
            return self._refuse("wrong password", username)
        return AuthResult(ok=True, username=username, device_id=cred.device_id)

    async def _check_digest(self, method: str, text: str) -> AuthResult:
        p = parse_auth_params(text)
        username, nonce, uri, response = (
            p.get(k) for k in ("username", "nonce", "uri", "response")
        )
        if not (username and nonce and uri and response):
            return self._refuse("incomplete Digest credentials", username)
        if p.get("realm", self.realm) != self.realm:
            return self._refuse(f"wrong realm {p.get('realm')!r}", username)
        if p.get("algorithm", "MD5").upper() != "MD5":
            return self._refuse(f"unsupported algorithm {p.get('algorithm')!r}", username)
        state = self._nonce_state(nonce)
        if state == "bad":
            return self._refuse("nonce was not issued by this ACS", username)
        cred = await self._lookup(username)
        if cred is None:
            return self._refuse("unknown username", username)
        ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
        qop = p.get("qop")
        if qop:
            if qop != "auth":
                return self._refuse(f"unsupported qop {qop!r}", username)
            nc, cnonce = p.get("nc", ""), p.get("cnonce", "")
            expected = hashlib.md5(f"{cred.ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())
        else:  # RFC 2069 style, still sent by old CPE stacks
            expected = hashlib.md5(f"{cred.ha1}:{nonce}:{ha2}".encode())
        if not hmac.compare_digest(expected.hexdigest(), response.lower()):
            return self._refuse("wrong password (digest mismatch)", username)
        if state == "stale":
            # right password, old nonce: ask again with stale=true so the CPE
            # retries without prompting for credentials
            return self._refuse("stale nonce", username, stale=True)
        return AuthResult(ok=True, username=username, device_id=cred.device_id)
