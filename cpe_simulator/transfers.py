"""File transfers as a CPE performs them: Download (HTTP GET) and Upload (HTTP PUT).

Failures map to the CPE fault codes of TR-069 Amendment 6 Table A.7, which the
CPE reports in TransferComplete:

- 9012 the file server refused the credentials
- 9013 the URL's scheme is not HTTP(S)
- 9015 the file server cannot be contacted
- 9016 the file is not there (404 and the like)
- 9017 the download could not be completed (cut off, short of FileSize)
- 9018 the file is corrupted (checked by the caller: image hash, config syntax)
- 9010 / 9011 any other download / upload failure

Credentials are offered only after the server asks (401), with Digest when it
offers Digest and Basic otherwise, as CPE HTTP clients commonly do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp

from acs.cwmp.messages import ParameterValueStruct
from cpe_simulator.faults import CpeFault

if TYPE_CHECKING:
    from cpe_simulator.tree import ParameterTree

CHUNK = 64 * 1024
ATTEMPTS = 3  # a cut transfer is resumed with Range this many times in all


@dataclass(slots=True)
class Transfer:
    """A Download or Upload the CPE accepted and carries out after the session."""

    command_key: str
    is_download: bool
    file_type: str
    url: str
    username: str
    password: str
    file_size: int
    target_file_name: str
    state: int = 1  # 1 not yet started, 2 in progress, 3 completed (GetQueuedTransfers)
    event: str = ""  # its "M <method>" event when not M Download/M Upload (M ScheduleDownload)


def check_url(url: str) -> None:
    """Refuse at once what the CPE could never fetch (answered in the session)."""
    if not url.lower().startswith(("http://", "https://")):
        raise CpeFault(9013)


def _offers_basic(resp: aiohttp.ClientResponse) -> bool:
    return any(c.lower().startswith("basic") for c in resp.headers.getall("WWW-Authenticate", []))


async def _request(
    http: aiohttp.ClientSession,
    method: str,
    t: Transfer,
    digest: aiohttp.DigestAuthMiddleware | None,
    *,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> aiohttp.ClientResponse:
    """One request; answers a Digest challenge (in the middleware) or a Basic one."""
    middlewares = (digest,) if digest else ()
    resp = await http.request(method, t.url, headers=headers, data=data, middlewares=middlewares)
    if resp.status == 401 and t.username and _offers_basic(resp):
        resp.release()
        with_basic = {
            **(headers or {}),
            "Authorization": aiohttp.encode_basic_auth(t.username, t.password),
        }
        resp = await http.request(method, t.url, headers=with_basic, data=data)
    return resp


def _digest_for(t: Transfer) -> aiohttp.DigestAuthMiddleware | None:
    # one per transfer, so a resumed GET reuses the nonce with the next nc
    return aiohttp.DigestAuthMiddleware(t.username, t.password) if t.username else None


async def download(
    http: aiohttp.ClientSession, t: Transfer, *, truncate: bool = False, corrupt: bool = False
) -> bytes:
    """GET the file, resuming with Range after a cut; ``truncate``/``corrupt`` are the
    fault profiles that spoil what arrived."""
    received = bytearray()
    digest = _digest_for(t)
    for _attempt in range(ATTEMPTS):
        headers = {"Range": f"bytes={len(received)}-"} if received else {}
        try:
            resp = await _request(http, "GET", t, digest, headers=headers)
            try:
                if resp.status in (401, 403):
                    raise CpeFault(9012)
                if resp.status in (404, 410):
                    raise CpeFault(9016)
                if resp.status not in (200, 206):
                    raise CpeFault(9010, f"File transfer failure: HTTP {resp.status}")
                if resp.status == 200:
                    received.clear()  # the server ignored Range: start over
                # read as it arrives, so what came before a cut is kept for the resume
                async for chunk in resp.content.iter_chunked(CHUNK):
                    received += chunk
            finally:
                resp.release()
        except aiohttp.ClientConnectorError:
            raise CpeFault(9015) from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
            continue  # cut mid-way: resume from what we have
        break
    else:
        raise CpeFault(9017, f"File transfer failure: connection lost {ATTEMPTS} times")
    if truncate:
        raise CpeFault(9017, f"File transfer failure: stopped after {len(received) // 2} bytes")
    if t.file_size and len(received) != t.file_size:
        raise CpeFault(9017, f"File transfer failure: got {len(received)} of {t.file_size} bytes")
    if corrupt and received:
        received[-1] ^= 0xFF
    return bytes(received)


async def upload(http: aiohttp.ClientSession, t: Transfer, body: bytes) -> None:
    """PUT ``body`` to the URL (TR-069 A.4.1.5 allows PUT for HTTP uploads)."""
    try:
        resp = await _request(http, "PUT", t, _digest_for(t), data=body)
        try:
            if resp.status in (401, 403):
                raise CpeFault(9012)
            if resp.status >= 300:
                raise CpeFault(9011, f"Upload failure: HTTP {resp.status}")
        finally:
            resp.release()
    except aiohttp.ClientConnectorError:
        raise CpeFault(9015) from None
    except aiohttp.ClientError as err:
        raise CpeFault(9011, f"Upload failure: {type(err).__name__}") from None


def config_file_parameters(data: bytes) -> list[ParameterValueStruct]:
    """A vendor configuration file: one ``path=value`` per line; ``#`` starts a comment."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise CpeFault(9018, "File transfer failure: configuration file is not text") from None
    params = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        path, eq, value = line.partition("=")
        if not eq:
            raise CpeFault(9018, f"File transfer failure: bad configuration line {line[:60]!r}")
        # a value's trailing blanks are its own (TR-181 RegulatoryDomain "DE ")
        params.append(ParameterValueStruct(path.strip(), value.lstrip(" "), ""))
    return params


# credentials stay out of the file: a configuration restored onto a replacement
# device must not take over the old device's passwords, nor its usernames at
# the ACS (the swap keeps its own); a secret also reads back empty (TR-069 A.3.2.1)
_NOT_IN_CONFIG = re.compile(r"(Password|Passphrase|Key|Secret|Username)$", re.IGNORECASE)


def config_file(tree: ParameterTree) -> bytes:
    """The device's vendor configuration file: every writable parameter but the
    credentials, ``path=value`` a line, sorted; the same tree gives the same bytes."""
    names = sorted(
        info.name
        for info in tree.get_parameter_names(tree.root, False)
        if info.writable
        and not info.name.endswith(".")
        and not _NOT_IN_CONFIG.search(info.name.rsplit(".", 1)[-1])
    )
    lines = [f"# vendor configuration file of {tree.root.rstrip('.')}"]
    lines += [f"{p.name}={p.value}" for p in tree.get_parameter_values(names)]
    return ("\n".join(lines) + "\n").encode()
