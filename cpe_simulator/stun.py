"""A CPE's TR-111 Part 2 side: STUN keep-alives and UDP connection requests.

A device whose ManagementServer has STUNEnable and a STUNServerAddress opens
one UDP socket and, every STUNMinimumKeepAlivePeriod, sends a Binding Request
with CONNECTION-REQUEST-BINDING from it to the ACS's STUN server, so its NAT
keeps a binding open. USERNAME is STUNUsername; MESSAGE-INTEGRITY (keyed with
STUNPassword) is added once the server has answered 401, as TR-111 asks. The
mapped address in the answer becomes UDPConnectionRequestAddress, and
NATDetected says whether it differs from the socket's own address. When it
changes, the next request carries BINDING-CHANGE.

The same socket receives the ACS's UDP connection requests: a valid signature
with the device's ConnectionRequestUsername/Password, an id not seen before and
a ts not older than the last accepted one make the device open a session with
"6 CONNECTION REQUEST".

Profile ``nat-rebind``: every few keep-alives the device's NAT hands it a new
public port (simulated by moving to a new local socket), the BINDING-CHANGE path.
Profile ``nat-drop:SECONDS``: the NAT forgets the binding after that long with
no traffic on it; a knock to it is lost (counted ``nat_dropped``), and the next
keep-alive leaves through a new binding (a new socket, so a new public port),
which the ACS learns from its BINDING-CHANGE. Profile ``udp-loss:PERCENT``:
that share of incoming connection requests is lost on the way (``lost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from acs.connreq import stun, udp

if TYPE_CHECKING:
    from cpe_simulator.cpe import SimulatedCpe
    from cpe_simulator.fleet import Fleet

_TRUE = ("1", "true")
DEFAULT_KEEPALIVE_S = 30.0  # STUNMinimumKeepAlivePeriod 0: "no minimum", so the CPE picks
REBIND_EVERY = 3  # nat-rebind: a new public port every this many keep-alives
ANSWER_WAIT_S = 2.0


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, agent: StunAgent) -> None:
        self.agent = agent

    def datagram_received(self, data: bytes, addr: tuple[str | Any, ...]) -> None:
        self.agent.received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        self.agent.fleet.count("stun", "icmp_error")


class StunAgent:
    """One device's STUN client and UDP connection-request listener."""

    def __init__(self, fleet: Fleet, cpe: SimulatedCpe, host: str) -> None:
        self.fleet, self.cpe, self.host = fleet, cpe, host
        self.transport: asyncio.DatagramTransport | None = None
        self.guard = udp.ReplayGuard()
        self.signed = False  # the server asked for MESSAGE-INTEGRITY (401) once
        self.mapped: tuple[str, int] | None = None
        self.binding_changed = False
        self.keepalives = 0
        self.last_traffic = 0.0  # monotonic: last datagram through the binding (nat-drop)
        self._loss_due: float | None = None  # udp-loss: how close the next loss is, of 100
        self._pending: dict[bytes, asyncio.Future[stun.BindingAnswer]] = {}
        self._task: asyncio.Task[None] | None = None

    def _param(self, name: str) -> str:
        return self.cpe.tree.value(f"{self.cpe.tree.root}ManagementServer.{name}")

    def enabled(self) -> bool:
        return self._param("STUNEnable").lower() in _TRUE and bool(self._param("STUNServerAddress"))

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: _Socket(self), local_addr=(self.host, 0)
        )

    async def _run(self) -> None:
        while self.enabled() and self.cpe.state == "up" and not self.fleet.closing:
            if (
                self.cpe.has("nat-rebind")
                and self.keepalives
                and self.keepalives % REBIND_EVERY == 0
            ):
                self._close()  # the NAT forgot us: the next datagram makes a new binding
            if self.transport is None:
                await self._open()
            await self.keepalive()
            period = float(self._param("STUNMinimumKeepAlivePeriod") or 0) or DEFAULT_KEEPALIVE_S
            await asyncio.sleep(max(period, 0.2))
        self._close()

    def binding_dropped(self) -> bool:
        """nat-drop: whether the NAT has forgotten this socket's binding by now."""
        limit = self.fleet.profile_values.get("nat-drop")
        idle = time.monotonic() - self.last_traffic
        return limit is not None and self.transport is not None and idle > limit

    def _lost(self) -> bool:
        """udp-loss: spread evenly (error diffusion), the first datagram lost."""
        share = self.fleet.profile_values.get("udp-loss")
        if not share:
            return False
        due = (100.0 - share if self._loss_due is None else self._loss_due) + share
        self._loss_due = due - 100.0 if due >= 100.0 else due
        return due >= 100.0

    async def keepalive(self) -> None:
        """One Binding Request (two when challenged first), and what its answer says."""
        self.keepalives += 1
        if self.binding_dropped():
            self._close()  # what leaves now gets a new binding from the NAT
            self.fleet.count("stun", "nat_dropped_binding")
        if self.transport is None:
            await self._open()
        answer = await self._ask()
        if answer is not None and answer.error_code == 401 and not self.signed:
            self.signed = True
            answer = await self._ask()
        if answer is None or answer.mapped is None:
            self.fleet.count(
                "stun", "no_answer" if answer is None else f"error_{answer.error_code}"
            )
            return
        self.fleet.count("stun", "answered")
        if self.mapped is not None and answer.mapped != self.mapped:
            self.binding_changed = True  # TR-111: say so at once, in a request of its own
            self.mapped = answer.mapped
            self._report()
            answer = await self._ask()
            self.fleet.count("stun", "binding_change_sent")
            return
        self.mapped = answer.mapped
        self._report()

    async def _ask(self) -> stun.BindingAnswer | None:
        if self.transport is None:
            return None
        username = self._param("STUNUsername")
        password = self._param("STUNPassword") if self.signed else None
        tid, data = stun.binding_request(username, password, binding_change=self.binding_changed)
        waiter = asyncio.get_running_loop().create_future()
        self._pending[tid] = waiter
        try:
            server = (self._param("STUNServerAddress"), int(self._param("STUNServerPort") or 3478))
            self.transport.sendto(data, server)
            self.last_traffic = time.monotonic()
            answer = await asyncio.wait_for(waiter, ANSWER_WAIT_S)
        except (TimeoutError, OSError, ValueError):
            return None
        finally:
            self._pending.pop(tid, None)
        if answer.mapped is not None:
            self.binding_changed = False
        return answer

    def _report(self) -> None:
        assert self.mapped is not None and self.transport is not None
        ip, port = self.mapped
        address = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        local_ip = self.transport.get_extra_info("sockname")[0]
        natted = self.fleet.config.nat or ip != local_ip
        root = f"{self.cpe.tree.root}ManagementServer."
        if self._param("UDPConnectionRequestAddress") != address:
            self.fleet.change_value(self.cpe.serial, root + "UDPConnectionRequestAddress", address)
        if (self._param("NATDetected").lower() in _TRUE) != natted:
            text = (
                ("true" if natted else "false") if root.startswith("Device.") else str(int(natted))
            )
            self.fleet.change_value(self.cpe.serial, root + "NATDetected", text)

    def received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.binding_dropped():  # the NAT has no binding for it: it never arrives
            if data[:4] == b"GET ":
                self.fleet.count("udp_connection_request", "nat_dropped")
            return
        self.last_traffic = time.monotonic()
        if data[:4] == b"GET ":
            if self._lost():
                self.fleet.count("udp_connection_request", "lost")
                return
            self._connection_request(data)
            return
        try:
            answer = stun.parse_binding_answer(
                data, self._param("STUNPassword") if self.signed else None
            )
        except stun.StunError as err:
            self.fleet.count("stun", err.outcome)
            return
        waiter = self._pending.get(answer.transaction_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)

    def _connection_request(self, data: bytes) -> None:
        cpe = self.cpe
        try:
            msg = udp.parse(data)
        except udp.UdpRequestError:
            self.fleet.count("udp_connection_request", "malformed")
            return
        tree = cpe.tree
        if not udp.verify(msg, tree.connection_request_username, tree.connection_request_password):
            self.fleet.count("udp_connection_request", "bad_signature")
            return
        refused = self.guard.refuse(msg)
        if refused is not None:
            self.fleet.count("udp_connection_request", refused.replace(" ", "_"))
            return
        if cpe.state != "up":
            return
        if not self.fleet.cr_server.admit(cpe.serial):  # TR-069 3.2.2: a CPE limits the rate
            self.fleet.count("udp_connection_request", "rate_limited")
            return
        self.fleet.count("udp_connection_request", "accepted")
        cpe.add_event("6 CONNECTION REQUEST")
        if not cpe.in_session:
            self.fleet.wake(cpe)
