"""The username an Authorization header claims, read without verifying it.

Fair admission (acs/core/admission.py) refuses a client already at its
credential's limit before anything else is done for it; verifying a
credential may read the database, so the limit is first checked against the
name the request claims, and exactly once the credential is verified.
"""

from __future__ import annotations

import base64
import binascii

from acs.web.cpe_auth import parse_auth_params


def claimed_username(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, rest = authorization.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "digest":
        return parse_auth_params(rest).get("username") or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(rest.strip(), validate=True).decode("utf-8")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None
