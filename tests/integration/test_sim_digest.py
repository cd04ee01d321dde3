"""The simulator's Digest answers meet what the ACS now requires of a CPE.

acs/web/cpe_auth.py refuses a Digest answer without qop=auth, one whose nonce
count does not grow, and one whose ``uri`` is not the request target. The
simulated CPEs answer a stub ACS here, which records every Authorization
header they send.
"""

from __future__ import annotations

import re

from acs.cwmp import messages as m
from acs.web.cpe_auth import parse_auth_params
from cpe_simulator.auth import DigestChecker
from cpe_simulator.fleet import Fleet, FleetConfig
from tests.integration.test_sim_against_stub import (  # noqa: F401  (stub is a fixture)
    FAST,
    SV,
    StubAcs,
    only,
    sessions,
    stub,
)


async def test_simulated_cpes_send_qop_auth_a_growing_nc_and_the_request_uri(
    stub: StubAcs,  # noqa: F811
) -> None:
    checker = DigestChecker(realm="stub-acs")
    sent: list[str] = []
    check = checker.check

    def recording(method: str, header: str | None, username: str, password: str) -> bool:
        if header is not None:
            sent.append(header)
        return check(method, header, username, password)

    checker.check = recording  # type: ignore[method-assign]
    stub.digest = checker
    # a fleet of its own (not the stub tests' factory, whose serial numbering
    # picks which of their devices get fault profiles)
    config = FleetConfig(
        acs_url=f"{stub.base}/cwmp",
        devices=1,
        serial_prefix="SIMDIGEST",
        username="cpe",
        password="cpe-pw",
        timing=FAST,
    )
    fleet = Fleet(config)
    await fleet.start()
    try:
        serial, cpe = only(fleet)
        stub.queue(serial, m.GetParameterValues([SV]))
        await sessions(stub, fleet, serial, 1)
        cpe.add_event("2 PERIODIC")
        fleet.wake(cpe)
        await sessions(stub, fleet, serial, 2)
        assert cpe.sessions_ok == 2
    finally:
        await fleet.stop()

    assert len(sent) >= 4  # every POST of both sessions was answered with Digest
    counts: dict[str, list[int]] = {}
    for header in sent:
        assert header.startswith("Digest "), header
        p = parse_auth_params(header[7:])
        assert p["qop"] == "auth" and p["cnonce"], header
        assert p["uri"] == "/cwmp", header
        assert re.fullmatch(r"[0-9a-f]{8}", p["nc"]), header
        counts.setdefault(p["nonce"], []).append(int(p["nc"], 16))
    # the stub's nonces change once a second: requests within one share a nonce
    assert any(len(ncs) > 1 for ncs in counts.values()), counts
    for nonce, ncs in counts.items():
        # one CPE, one request at a time: each count is higher than the one before
        assert all(a < b for a, b in zip(ncs, ncs[1:], strict=False)), (nonce, ncs)
