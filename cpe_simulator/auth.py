"""HTTP Digest on the CPE's side of a connection request (TR-069 3.2.2).

The simulator checks the ACS's Digest response itself (it uses nothing of the
ACS but its CWMP codec): MD5, qop=auth, nonces signed with a per-process key
so that none needs to be remembered.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time

NONCE_LIFETIME_S = 300
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,]*)\s*(?:,|$)')


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


class DigestChecker:
    def __init__(self, realm: str = "cpe-sim") -> None:
        self.realm = realm
        self._key = os.urandom(16)

    def challenge(self) -> str:
        stamp = str(int(time.time()))
        sig = hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        return f'Digest realm="{self.realm}", qop="auth", algorithm=MD5, nonce="{stamp}.{sig}"'

    def _nonce_ok(self, nonce: str) -> bool:
        stamp, _, sig = nonce.partition(".")
        good = hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        if not stamp.isdigit() or not hmac.compare_digest(sig, good):
            return False
        return time.time() - int(stamp) <= NONCE_LIFETIME_S

    def check(self, method: str, header: str | None, username: str, password: str) -> bool:
        if not header or not header.lower().startswith("digest "):
            return False
        p = {k.lower(): v.strip('"') for k, v in _PARAM.findall(header[7:])}
        if p.get("username") != username or not self._nonce_ok(p.get("nonce", "")):
            return False
        ha1 = _md5(f"{username}:{self.realm}:{password}")
        ha2 = _md5(f"{method}:{p.get('uri', '')}")
        if p.get("qop") == "auth":
            nc, cnonce = p.get("nc", ""), p.get("cnonce", "")
            expected = _md5(f"{ha1}:{p['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        else:
            expected = _md5(f"{ha1}:{p['nonce']}:{ha2}")
        return hmac.compare_digest(expected, p.get("response", "").lower())
