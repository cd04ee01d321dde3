"""Server TLS contexts for the three listeners, from the ACS_TLS_* settings.

One certificate serves every listener that speaks TLS. Only the CWMP port
asks for client certificates: that is where CPEs authenticate, and a client
certificate there is a gate in addition to HTTP authentication (or, with
``ACS_CPE_AUTH=none`` and ``required``, the CPE's only credential).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from acs.config import Settings


class TlsConfigError(ValueError):
    """A certificate, key or CA file that cannot be used, with the setting that names it."""


def server_context(settings: Settings, listener: str) -> ssl.SSLContext | None:
    """The TLS context for ``listener`` ("cwmp", "api", "files"), or None for plain HTTP."""
    if not settings.tls_on(listener):
        return None
    assert settings.tls_cert_file is not None
    # Purpose.CLIENT_AUTH: a server-side context with the library's safe defaults
    # (no SSLv3/TLS 1.0-1.1, no compression, forward-secret ciphers first)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, settings.tls_cert_file, settings.tls_key_file)
    if listener == "cwmp" and settings.cwmp_client_cert != "none":
        assert settings.tls_client_ca_file is not None  # the settings refuse it otherwise
        _load_ca(ctx, settings.tls_client_ca_file)
        # optional still refuses a certificate that does not verify; it only lets
        # a CPE without one through to HTTP authentication
        ctx.verify_mode = (
            ssl.CERT_REQUIRED if settings.cwmp_client_cert == "required" else ssl.CERT_OPTIONAL
        )
    return ctx


def reload(ctx: ssl.SSLContext, settings: Settings) -> None:
    """Load the certificate files again (after a renewal); new handshakes use them."""
    assert settings.tls_cert_file is not None
    _load_chain(ctx, settings.tls_cert_file, settings.tls_key_file)


def _load_chain(ctx: ssl.SSLContext, cert: Path, key: Path | None) -> None:
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise TlsConfigError(
            f"ACS_TLS_CERT_FILE/ACS_TLS_KEY_FILE: no such file {exc.filename}"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(
            f"ACS_TLS_CERT_FILE={cert}"
            + (f", ACS_TLS_KEY_FILE={key}" if key else "")
            + f": cannot load the certificate and key: {exc}"
        ) from None


def _load_ca(ctx: ssl.SSLContext, ca: Path) -> None:
    try:
        ctx.load_verify_locations(cafile=ca)
    except FileNotFoundError:
        raise TlsConfigError(f"ACS_TLS_CLIENT_CA_FILE: no such file {ca}") from None
    except (ssl.SSLError, OSError) as exc:
        raise TlsConfigError(f"ACS_TLS_CLIENT_CA_FILE={ca}: cannot load the CA: {exc}") from None


def peer_subject(transport: object) -> str | None:
    """The verified client certificate's subject commonName, for logs; None without one."""
    get = getattr(transport, "get_extra_info", None)
    cert = get("peercert") if get is not None else None
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
