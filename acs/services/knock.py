"""Connection requests on a device's behalf: whose credentials, which channel.

Used by the API (a job "now") and by campaigns and bulk jobs that pull
devices in instead of waiting for their periodic Inform. One knock picks the
channels that can reach the device (acs.core.reach: HTTP to its
ConnectionRequestURL, UDP to its STUN binding or UDPConnectionRequestAddress,
UDP first behind a NAT, then XMPP to its ConnReqJabberID), tries them in order
inside the one timeout, and records each channel's outcome for operators.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from acs.config import Settings
from acs.connreq.http import ConnectionRequester, ConnectionRequestResult
from acs.connreq.udp_sender import UdpConnectionRequester
from acs.connreq.xmpp_client import XmppConnectionRequester
from acs.core.reach import CHANNELS, plan
from acs.core.sealing import Sealer
from acs.core.secrets import is_sealed
from acs.logs import log
from acs.services.knock_reads import KnockReads
from acs.services.knock_watch import ArrivalWatcher
from acs.services.sealing_key import sealer
from acs.store import nat

logger = logging.getLogger("acs.connreq")

_ROOTS = ("Device.", "InternetGatewayDevice.")
PASSWORD = "ManagementServer.ConnectionRequestPassword"
# what a UDP retry needs at least: its first send and a few ticks of the watcher
RETRY_UDP_MIN_S = 0.5


def _credentials(settings: Settings, dev_id: str, row: Any) -> tuple[str | None, str, str]:
    """(ConnectionRequestURL, username, password) from the device's
    ``nat.knock_contexts`` row: the credentials the ACS stored for the device,
    else the ones in its tree, else the configured defaults. Passwords are kept
    sealed; they are opened here, for this knock only."""
    seal = sealer(settings)
    if row["username"] is not None:
        username, password = row["username"], _opened(seal, dev_id, row["password"])
    else:
        username = row["tree_username"] or settings.connection_request_username or ""
        password = (
            seal.open_value(dev_id, _ROOTS[0] + PASSWORD, row["sealed_under_device"])
            or seal.open_value(dev_id, _ROOTS[1] + PASSWORD, row["sealed_under_igd"])
            or settings.connection_request_password
            or ""
        )
    return row["connection_request_url"], username, password


def _opened(seal: Sealer, dev_id: str, stored: str) -> str:
    """A kept password: sealed for the parameter path it was set on (either
    root), or in clear in a row written before passwords were sealed."""
    if not is_sealed(stored):
        return stored
    for root in _ROOTS:
        clear = seal.open_value(dev_id, root + PASSWORD, stored)
        if clear is not None:
            return clear
    log(logger, logging.WARNING, "connection_request_password_unreadable", device=dev_id)
    return ""


async def knock(
    pool: asyncpg.Pool,
    requester: ConnectionRequester,
    settings: Settings,
    dev_id: str,
    udp: UdpConnectionRequester | None = None,
    xmpp: XmppConnectionRequester | None = None,
    arrivals: ArrivalWatcher | None = None,
) -> ConnectionRequestResult:
    """Ask the device to open a session now, over the first channel that works.

    ``arrivals`` is the process's watcher of knocks waiting for their session
    (UDP and XMPP have no answer of their own); without one, this knock gets
    its own, which reads for this device alone.

    The timeout (ACS_CONNECTION_REQUEST_TIMEOUT_S) is the channels' time: it
    runs from the moment the device's reads are back, so a knock queued behind
    a burst of others still gets its whole time to reach the device."""
    since = datetime.now(UTC)  # a session from here on is this knock's
    reads = arrivals.reads if arrivals is not None else KnockReads(pool)
    row = await reads.context(dev_id)
    start = time.monotonic()
    if row is None:
        requester.metrics.connection_request("no_url")
        return ConnectionRequestResult(False, None, "unknown device", 0.0, "no_url")
    url, username, password = _credentials(settings, dev_id, row)
    reach = nat.reach_of(row)
    p = plan(reach, since, timedelta(seconds=settings.stun_binding_fresh_s), xmpp=xmpp is not None)
    unusable = dict(p.unusable)
    order = list(p.order)
    if udp is None and "udp" in order:
        order.remove("udp")
        unusable["udp"] = "UDP connection requests are off (ACS_STUN_ENABLE=false)"
    channels: dict[str, dict[str, object]] = {
        ch: {"tried": False, "reason": why} for ch, why in unusable.items()
    }
    budget = settings.connection_request_timeout_s
    last: ConnectionRequestResult | None = None
    # watched from the knock's start: a session that comes while an earlier channel
    # is tried, or just before an XMPP IQ times out, still counts
    waits = "udp" in order or "xmpp" in order
    arrival = (arrivals or ArrivalWatcher(pool)).watch(dev_id, since) if waits else None
    tried: dict[str, tuple[ConnectionRequestResult, datetime]] = {}

    async def attempt(channel: str, share: float) -> ConnectionRequestResult:
        if channel == "http":
            assert url is not None
            r = await _http(requester, url, username, password, share)
        elif channel == "xmpp":
            assert xmpp is not None and reach.jabber_id is not None and arrival is not None
            r = await xmpp.send(reach.jabber_id, username, password, arrival.wait, share)
        else:
            assert udp is not None and p.udp_target is not None and arrival is not None
            from_binding = reach.binding is not None and p.udp_target == (
                reach.binding.address,
                reach.binding.port,
            )
            r = await udp.send(
                p.udp_target,
                username,
                password,
                arrival.wait,
                share,
                # the binding as the watcher last read it: no read of our own
                arrival.moved if from_binding else None,
            )
        r.channel = channel
        channels[channel] = {
            "tried": True,
            "ok": r.ok,
            "outcome": r.outcome,
            "reason": r.reason,
            "elapsedS": r.elapsed_s,
        }
        # written once the knock is over: under load a pool checkout here took
        # seconds of the budget the next channel (or the UDP retry) needed
        tried[channel] = (r, datetime.now(UTC))
        return r

    def out() -> list[str]:
        """Channels whose request is out and unanswered: it may still bring the
        session. A refusal (an error IQ, no XMPP login, a failed send) is an answer."""
        return [ch for ch in ("udp", "xmpp") if ch in tried and tried[ch][0].outcome == "timeout"]

    def came_after(channel: str) -> ConnectionRequestResult:
        """The session came after ``channel``'s share of the time: that channel brought it."""
        elapsed = time.monotonic() - start
        r = ConnectionRequestResult(
            True,
            None,
            f"session opened {elapsed:.1f} s into the knock, after its {channel} request",
            round(elapsed, 3),
            "accepted",
            channel,
        )
        channels[channel] |= {
            "ok": True,
            "outcome": r.outcome,
            "reason": r.reason,
            "elapsedS": r.elapsed_s,
        }
        tried[channel] = (r, datetime.now(UTC))
        return r

    async def while_out(channel: str, share: float) -> ConnectionRequestResult:
        """The next channel, tried while an earlier one's request is out: the session
        that request brings ends the attempt (a NATed device's URL may hang for its
        whole share)."""
        assert arrival is not None
        trying = asyncio.ensure_future(attempt(channel, share))
        came = asyncio.ensure_future(arrival.wait(share))
        try:
            done, _ = await asyncio.wait({trying, came}, return_when=asyncio.FIRST_COMPLETED)
            if trying not in done and came.result():
                trying.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await trying
                brought_by = out()[-1]
                channels[channel] = {
                    "tried": False,
                    "reason": f"not needed: the session came after the {brought_by} request",
                }
                return came_after(brought_by)
            return await trying
        finally:
            for t in (trying, came):
                t.cancel()

    try:
        for i, channel in enumerate(order):
            remaining = budget - (time.monotonic() - start)
            if remaining <= 0.05:
                channels[channel] = {"tried": False, "reason": "not tried: the timeout was used up"}
                continue
            # a channel with another behind it gets half the time, so a hanging one
            # leaves the next its chance inside the caller's timeout
            share = remaining if i == len(order) - 1 else remaining / 2
            if arrival is not None and out():
                last = await while_out(channel, share)
            else:
                last = await attempt(channel, share)
            if last.ok:
                break
        remaining = budget - (time.monotonic() - start)
        if (
            last is not None
            and not last.ok
            and "udp" in order[:-1]
            and channels["udp"].get("tried")
            and remaining > RETRY_UDP_MIN_S
        ):
            # UDP had half the time and the channel after it failed quickly (a NATed
            # device's private URL refuses): UDP again with what is left, as a new
            # message (ts, id), in case the CPE lost or refused the first one
            last = await attempt("udp", remaining)
        remaining = budget - (time.monotonic() - start)
        if last is not None and not last.ok and arrival is not None and out():
            # a datagram or an IQ that is out may still bring the session after its
            # channel's share ran out: it counts for as long as the caller waits
            # (0 left: what the watcher has seen meanwhile)
            if await arrival.wait(max(remaining, 0.0)):
                last = came_after(out()[-1])
    finally:
        if arrival is not None:
            arrival.close()
    if tried:
        async with pool.acquire() as conn:
            await nat.record_outcomes(
                conn,
                dev_id,
                [(ch, r.ok, r.outcome, r.reason, r.elapsed_s, at) for ch, (r, at) in tried.items()],
            )
    result = _overall(last, channels, time.monotonic() - start)
    if last is None:
        requester.metrics.connection_request(result.outcome)
    log(
        logger,
        logging.INFO if result.ok else logging.WARNING,
        "connection_request",
        device=dev_id,
        ok=result.ok,
        channel=result.channel,
        outcome=result.outcome,
        status=result.status,
        reason=result.reason,
    )
    return result


def _overall(
    last: ConnectionRequestResult | None,
    channels: dict[str, dict[str, object]],
    elapsed: float,
) -> ConnectionRequestResult:
    if last is not None and last.ok:
        last.channels = channels
        return last
    reason = "; ".join(f"{ch}: {channels[ch]['reason']}" for ch in CHANNELS if ch in channels)
    if last is None:
        # nothing could be tried: keep the single-channel wording an HTTP-only ACS gave
        http = channels.get("http", {})
        outcome = "no_url" if "ConnectionRequestURL" in str(http.get("reason")) else "unreachable"
        return ConnectionRequestResult(
            False, None, reason, round(elapsed, 3), outcome, "none", channels
        )
    return ConnectionRequestResult(
        False, last.status, reason, round(elapsed, 3), last.outcome, last.channel, channels
    )


async def _http(
    requester: ConnectionRequester, url: str, username: str, password: str, limit_s: float
) -> ConnectionRequestResult:
    if limit_s >= requester.timeout_s:
        return await requester.send(url, username, password)
    begun = time.monotonic()
    try:
        return await asyncio.wait_for(requester.send(url, username, password), limit_s)
    except TimeoutError:
        requester.metrics.connection_request("timeout")
        elapsed = round(time.monotonic() - begun, 3)
        # worded as the requester's own timeout: callers compare reasons
        reason = f"timeout after {limit_s:.1f} s"
        return ConnectionRequestResult(False, None, reason, elapsed, "timeout")


async def reach_view(
    pool: asyncpg.Pool,
    settings: Settings,
    dev_id: str,
    *,
    udp_on: bool,
    xmpp: XmppConnectionRequester | None = None,
) -> dict[str, Any] | None:
    """What a knock on the device would do now, and how each channel last went."""
    async with pool.acquire() as conn:
        reach = await nat.reach(conn, dev_id)
        if reach is None:
            return None
        details = await nat.binding_details(conn, dev_id)
        last = await nat.outcomes(conn, dev_id)
    p = plan(
        reach,
        datetime.now(UTC),
        timedelta(seconds=settings.stun_binding_fresh_s),
        xmpp=xmpp is not None,
    )
    order, unusable = list(p.order), dict(p.unusable)
    if not udp_on and "udp" in order:
        order.remove("udp")
        unusable["udp"] = "UDP connection requests are off (ACS_STUN_ENABLE=false)"
    return {
        "order": order,
        "unusable": unusable,
        "connectionRequestUrl": reach.connection_request_url,
        "udpConnectionRequestAddress": reach.udp_address,
        "natDetected": reach.nat_detected,
        "connReqJabberId": reach.jabber_id,
        "xmppServer": None if xmpp is None else xmpp.status(),
        "stunBinding": details,
        "last": last,
    }
