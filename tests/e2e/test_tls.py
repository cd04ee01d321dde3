"""TLS on the three listeners and CPE client certificates, with a throwaway CA.

Real handshakes on 127.0.0.1: the simulator and test clients verify the ACS
against the test CA, and present client certificates the ACS verifies.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from acs.web.server import Running, running_acs
from acs.web.tls import TlsConfigError
from cpe_simulator.firmware import make_image
from tests.certs import Issued, TestCa
from tests.e2e.conftest import StartAcs, make_settings
from tests.e2e.cpe_double import CpeDouble
from tests.e2e.test_api import token
from tests.e2e.test_simulator_fleet import fleet_of, queue_and_run

pytestmark = pytest.mark.db

CPE_CN = "ACDE48-HGW-factory-cert"


@dataclass(frozen=True, slots=True)
class Pki:
    ca: TestCa
    server: Issued
    client: Issued  # issued by the ACS's client CA
    rogue_client: Issued  # issued by a CA the ACS does not know
    folder: Path

    def client_context(self, cert: Issued | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca.cert_file)
        if cert is not None:
            ctx.load_cert_chain(cert.cert, cert.key)
        return ctx


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = TestCa(tmp_path / "pki")
    rogue = TestCa(tmp_path / "rogue", "Rogue CA")
    return Pki(ca, ca.server(), ca.client(CPE_CN), rogue.client(CPE_CN), tmp_path / "pki")


def tls_settings(pki: Pki, **more: Any) -> dict[str, Any]:
    return {"tls_cert_file": pki.server.cert, "tls_key_file": pki.server.key} | more


async def inform_status(acs: Running, ctx: ssl.SSLContext, serial: str, **kw: Any) -> int:
    """Open a session as a CPE over TLS with ``ctx``; the HTTP status of the Inform."""
    cpe = CpeDouble(acs.url("cwmp"), serial, tls=ctx, **kw)
    try:
        return (await cpe.post(cpe.inform_message(["1 BOOT"]))).status
    finally:
        await cpe.close()


async def test_fleet_boots_and_downloads_firmware_over_tls(
    start_acs: StartAcs, pki: Pki, db_pool: asyncpg.Pool, unique_serial
) -> None:
    acs = await start_acs(
        **tls_settings(pki, cpe_auth="digest", cpe_username="cpe", cpe_password="cpe-pw")
    )
    assert acs.url("cwmp").startswith("https://")
    assert acs.settings.files_base_url.startswith("https://")  # what Download RPCs carry
    ctx = pki.client_context()
    name = f"fw-{unique_serial()}.bin"
    admin = {"Authorization": f"Bearer {await token(db_pool, 'admin', unique_serial)}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
        async with http.put(
            acs.url("api", f"/api/v1/files/{name}"), data=make_image("2.0.0", 50_000), headers=admin
        ) as resp:
            assert resp.status == 201, await resp.text()
    fleet = await fleet_of(acs, unique_serial("T"), 2, ca_file=str(pki.ca.cert_file))
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()), 60)
        serial = next(iter(fleet.devices))
        cpe = fleet.devices[serial]
        job = await queue_and_run(db_pool, fleet, serial, "download", {"fileName": name})
        assert job.args["fileName"] == name
        # the CPE fetched the image from the https file server, rebooted onto it,
        # and said so with a TransferComplete in a later session
        await fleet.wait_for(lambda: cpe.tree.software_version == "2.0.0", 30)
        assert cpe.sessions_failed == 0
    finally:
        await fleet.stop()


async def test_plain_http_and_an_unknown_ca_get_no_answer(
    start_acs: StartAcs, pki: Pki, unique_serial
) -> None:
    acs = await start_acs(**tls_settings(pki))
    async with aiohttp.ClientSession() as http:
        for listener in ("cwmp", "api", "files"):
            plain = acs.url(listener).replace("https://", "http://")
            # the TLS listener reads the HTTP request as a broken handshake and hangs up
            with pytest.raises(aiohttp.ClientError):
                async with http.post(plain, data=b"") as resp:
                    await resp.read()
        # the system's CAs do not know ours: the client refuses the ACS
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with http.get(acs.url("api", "/healthz")) as resp:
                await resp.read()
    # and a client that knows the CA is served, after all of that
    assert await inform_status(acs, pki.client_context(), unique_serial()) == 200


async def test_required_client_certificate_is_a_gate_before_http_auth(
    start_acs: StartAcs, pki: Pki, unique_serial
) -> None:
    acs = await start_acs(
        **tls_settings(
            pki,
            tls_client_ca_file=pki.ca.cert_file,
            cwmp_client_cert="required",
            cpe_auth="digest",
            cpe_username="cpe",
            cpe_password="cpe-pw",
        )
    )
    creds = {"digest": ("cpe", "cpe-pw")}
    for without in (pki.client_context(), pki.client_context(pki.rogue_client)):
        with pytest.raises(aiohttp.ClientError):
            await inform_status(acs, without, unique_serial(), **creds)
    with_cert = pki.client_context(pki.client)
    assert await inform_status(acs, with_cert, unique_serial(), **creds) == 200
    # the certificate does not replace the CPE's credential: both are needed
    assert await inform_status(acs, with_cert, unique_serial()) == 401
    # only the CWMP port asks for client certificates
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=pki.client_context())) as http,
        http.get(acs.url("api", "/healthz")) as resp,
    ):
        assert resp.status == 200


async def test_client_certificate_alone_with_cpe_auth_none(
    start_acs: StartAcs, pki: Pki, unique_serial, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="acs.cwmp")
    acs = await start_acs(
        **tls_settings(
            pki,
            tls_client_ca_file=pki.ca.cert_file,
            cwmp_client_cert="required",
            cpe_auth="none",
        )
    )
    fleet = await fleet_of(
        acs,
        unique_serial("K"),
        2,
        ca_file=str(pki.ca.cert_file),
        client_cert=str(pki.client.cert),
        client_key=str(pki.client.key),
    )
    try:
        await fleet.wait_for(lambda: all(c.sessions_ok for c in fleet.devices.values()), 60)
    finally:
        await fleet.stop()
    # the session's log line names the certificate that let the CPE in
    assert f"cert={CPE_CN}" in caplog.text
    with pytest.raises(aiohttp.ClientError):
        await inform_status(acs, pki.client_context(), unique_serial())


async def test_optional_client_certificate_must_verify_when_presented(
    start_acs: StartAcs, pki: Pki, unique_serial
) -> None:
    acs = await start_acs(
        **tls_settings(
            pki,
            tls_client_ca_file=pki.ca.cert_file,
            cwmp_client_cert="optional",
            cpe_auth="digest",
            cpe_username="cpe",
            cpe_password="cpe-pw",
        )
    )
    creds = {"digest": ("cpe", "cpe-pw")}
    assert await inform_status(acs, pki.client_context(), unique_serial(), **creds) == 200
    assert await inform_status(acs, pki.client_context(pki.client), unique_serial(), **creds) == 200
    with pytest.raises(aiohttp.ClientError):
        await inform_status(acs, pki.client_context(pki.rogue_client), unique_serial(), **creds)


async def test_unusable_certificate_files_stop_the_start_naming_the_setting(
    database_url: str, pki: Pki, tmp_path: Path
) -> None:
    cases = [
        ({"tls_cert_file": tmp_path / "missing.pem"}, "no such file"),
        # a key that is not the certificate's
        ({"tls_cert_file": pki.server.cert, "tls_key_file": pki.client.key}, "ACS_TLS_CERT_FILE"),
        (
            tls_settings(
                pki,
                tls_client_ca_file=tmp_path / "no-ca.pem",
                cwmp_client_cert="required",
                cpe_auth="none",
            ),
            "ACS_TLS_CLIENT_CA_FILE",
        ),
    ]
    for overrides, words in cases:
        settings = make_settings(data_dir=tmp_path, **overrides)
        with pytest.raises(TlsConfigError, match=words):
            async with running_acs(settings, database_url):
                raise AssertionError("the ACS started with an unusable certificate")


async def test_a_renewed_certificate_is_served_after_reload(start_acs: StartAcs, pki: Pki) -> None:
    acs = await start_acs(**tls_settings(pki))

    async def served_serial() -> int:
        _reader, writer = await asyncio.open_connection(
            "127.0.0.1", acs.ports["api"], ssl=pki.client_context()
        )
        try:
            return int(writer.get_extra_info("peercert")["serialNumber"], 16)
        finally:
            writer.close()
            await writer.wait_closed()

    assert await served_serial() == pki.server.serial
    renewed = pki.ca.server("server")  # written over the same files, as a renewal does
    assert renewed.serial != pki.server.serial
    assert await served_serial() == pki.server.serial  # until told to read them again
    acs.reload_tls()
    assert await served_serial() == renewed.serial
