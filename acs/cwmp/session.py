"""The CWMP session as an explicit state machine, sans-IO.

A CWMP session (TR-069 section 3.7) is one conversation over one or more HTTP
exchanges: the CPE posts an Inform, then its own requests, then an empty POST;
from then on the ACS sends its requests inside HTTP responses, one at a time,
each answered by the CPE's next POST; an empty HTTP response ends it.

Everything that decides whether a message may be sent lives in this file, in
one transition table. The table describes the *conversation*, not a party:
``Conversation`` is fed what the CPE sends and what the ACS sends, whichever
side runs it, so no rule is bent for one side.  ``AcsSession`` is the ACS's
view: bytes-level envelopes in, events out, envelopes to send.  The simulator
drives the same ``Conversation`` from the CPE's side.

A refused transition raises ``ProtocolError`` naming the event and the state.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass

from acs.cwmp import messages as m
from acs.cwmp.soap import CWMP_NS_1_0, Envelope


class State(enum.Enum):
    START = "start"  # nothing exchanged yet
    INFORM_SENT = "inform-sent"  # CPE sent Inform, awaits InformResponse
    CPE_TURN = "cpe-turn"  # CPE may send a request or its empty POST
    CPE_REQUEST_SENT = "cpe-request-sent"  # CPE sent a request, awaits the ACS's answer
    ACS_TURN = "acs-turn"  # ACS may send a request or end the session
    ACS_REQUEST_SENT = "acs-request-sent"  # ACS sent a request, awaits the CPE's answer
    CLOSED = "closed"  # ended normally, by a fault to Inform, or abandoned
    ERROR = "error"  # a rule was broken; nothing more is accepted


class Event(enum.Enum):
    # sent by the CPE
    INFORM = "CPE sends Inform"
    CPE_REQUEST = "CPE sends a request"
    EMPTY_POST = "CPE sends an empty POST"
    CPE_RESPONSE = "CPE sends a response"
    CPE_FAULT = "CPE sends a fault"
    # sent by the ACS
    INFORM_RESPONSE = "ACS sends InformResponse"
    ACS_RESPONSE = "ACS sends a response"
    ACS_FAULT = "ACS sends a fault"
    ACS_REQUEST = "ACS sends a request"
    EMPTY_RESPONSE = "ACS sends an empty response"
    # from neither: the session was given up (timeout, dropped connection)
    ABANDON = "session abandoned"


_S, _E = State, Event

TRANSITIONS: dict[tuple[State, Event], State] = {
    (_S.START, _E.INFORM): _S.INFORM_SENT,
    (_S.INFORM_SENT, _E.INFORM_RESPONSE): _S.CPE_TURN,
    # a fault to Inform (8005 retry, 8001 denied, ...) ends the session at once
    (_S.INFORM_SENT, _E.ACS_FAULT): _S.CLOSED,
    (_S.CPE_TURN, _E.CPE_REQUEST): _S.CPE_REQUEST_SENT,
    (_S.CPE_REQUEST_SENT, _E.ACS_RESPONSE): _S.CPE_TURN,
    (_S.CPE_REQUEST_SENT, _E.ACS_FAULT): _S.CPE_TURN,
    (_S.CPE_TURN, _E.EMPTY_POST): _S.ACS_TURN,
    (_S.ACS_TURN, _E.ACS_REQUEST): _S.ACS_REQUEST_SENT,
    (_S.ACS_TURN, _E.EMPTY_RESPONSE): _S.CLOSED,
    (_S.ACS_REQUEST_SENT, _E.CPE_RESPONSE): _S.ACS_TURN,
    (_S.ACS_REQUEST_SENT, _E.CPE_FAULT): _S.ACS_TURN,
}
# Any open session may be abandoned; a closed or broken one stays as it is.
for _state in State:
    if _state not in (State.CLOSED, State.ERROR):
        TRANSITIONS[(_state, Event.ABANDON)] = State.CLOSED


# Events that answer the other party's request, and events that open one.
# Sets built once: every message of every session passes through _apply.
_ANSWERS = frozenset({Event.CPE_RESPONSE, Event.ACS_RESPONSE, Event.INFORM_RESPONSE})
_REQUESTS = frozenset({Event.INFORM, Event.CPE_REQUEST, Event.ACS_REQUEST})


class ProtocolError(Exception):
    """A message that the CWMP session rules do not allow where it came."""

    def __init__(self, event: Event, state: State, reason: str = "") -> None:
        self.event = event
        self.state = state
        self.reason = reason or f"{event.value} is not allowed in state {state.value}"
        super().__init__(self.reason)


def classify_cpe_message(message: m.Message | None) -> Event:
    if message is None:
        return Event.EMPTY_POST
    if isinstance(message, m.Inform):
        return Event.INFORM
    if isinstance(message, m.Fault):
        return Event.CPE_FAULT
    if message.is_response:
        return Event.CPE_RESPONSE
    return Event.CPE_REQUEST


def classify_acs_message(message: m.Message | None) -> Event:
    if message is None:
        return Event.EMPTY_RESPONSE
    if isinstance(message, m.InformResponse):
        return Event.INFORM_RESPONSE
    if isinstance(message, m.Fault):
        return Event.ACS_FAULT
    if message.is_response:
        return Event.ACS_RESPONSE
    return Event.ACS_REQUEST


class Conversation:
    """The state of one CWMP session, fed by both parties' messages.

    Besides the table, it checks that an answer matches the request it
    answers (a GetParameterValuesResponse answers a GetParameterValues), which
    is why it keeps the outstanding request of each party.
    """

    __slots__ = ("state", "outstanding", "error")

    def __init__(self) -> None:
        self.state = State.START
        self.outstanding: m.Message | None = None  # the request awaiting an answer
        self.error: ProtocolError | None = None

    def cpe_sends(self, message: m.Message | None) -> Event:
        return self._apply(classify_cpe_message(message), message)

    def acs_sends(self, message: m.Message | None) -> Event:
        return self._apply(classify_acs_message(message), message)

    def abandon(self) -> None:
        if self.state not in (State.CLOSED, State.ERROR):
            self.state = State.CLOSED
            self.outstanding = None

    @property
    def is_open(self) -> bool:
        return self.state not in (State.CLOSED, State.ERROR)

    def _apply(self, event: Event, message: m.Message | None) -> Event:
        if self.state is State.ERROR:
            raise ProtocolError(event, self.state, "the session already broke a rule")
        target = TRANSITIONS.get((self.state, event))
        if target is None:
            self._fail(ProtocolError(event, self.state, _refusal_reason(event, self.state)))
        if event in _ANSWERS:
            assert message is not None
            expected = self.outstanding.rpc if self.outstanding is not None else None
            if message.rpc != expected:
                self._fail(
                    ProtocolError(
                        event,
                        self.state,
                        f"{message.element_name} does not answer the outstanding "
                        f"{expected or 'nothing'}",
                    )
                )
        assert target is not None
        self.state = target
        if event in _REQUESTS:
            self.outstanding = message
        elif event is not Event.EMPTY_POST:
            self.outstanding = None
        return event

    def _fail(self, error: ProtocolError) -> None:
        self.state = State.ERROR
        self.error = error
        raise error


def _refusal_reason(event: Event, state: State) -> str:
    if event is Event.CPE_RESPONSE or event is Event.CPE_FAULT:
        if state is not State.ACS_REQUEST_SENT:
            return f"{event.value} but the ACS sent no request (state {state.value})"
    if event is Event.INFORM and state is not State.START:
        return "Inform may only open a session"
    if state is State.START:
        return f"a session must start with Inform, got: {event.value}"
    if state is State.CLOSED:
        return f"{event.value} after the session ended"
    return f"{event.value} is not allowed in state {state.value}"


# --------------------------------------------------------------------- ACS view

SUPPORTED_CWMP_VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4")


@dataclass(slots=True)
class InformReceived:
    inform: m.Inform
    envelope: Envelope


@dataclass(slots=True)
class RequestReceived:
    """The CPE sent one of its own requests; answer it with ``send``."""

    request: m.Message


@dataclass(slots=True)
class CpeRequestsDone:
    """The CPE posted empty: the ACS may send a request or end the session."""


@dataclass(slots=True)
class ResponseReceived:
    """The CPE answered the ACS's request (``response`` may be a ``Fault``)."""

    request: m.Message
    response: m.Message


AcsEvent = InformReceived | RequestReceived | CpeRequestsDone | ResponseReceived


def negotiate_cwmp_version(supported: str | None) -> str | None:
    """CWMP 1.4 (TR-069 A.2.2.3): pick the highest version both sides support."""
    if not supported:
        return None
    offered = {v.strip() for v in supported.split(",")}
    common = [v for v in SUPPORTED_CWMP_VERSIONS if v in offered]
    return max(common, key=lambda v: tuple(int(p) for p in v.split("."))) if common else None


def cwmp_version_of(envelope: Envelope, negotiated: str | None) -> str:
    """The protocol version a session speaks, for the device record."""
    if negotiated:
        return negotiated
    return {"urn:dslforum-org:cwmp-1-0": "1.0", "urn:dslforum-org:cwmp-1-1": "1.1"}.get(
        envelope.cwmp_ns, "1.2"
    )


class AcsSession:
    """The ACS side of one CWMP session: envelopes in, events out, envelopes to send.

    Replies use the namespace of the CPE's Inform and echo the cwmp:ID of the
    request they answer. The ACS's own requests carry fresh IDs. HoldRequests
    is never sent (TR-069 allows it, but CPEs handle it badly and nothing here
    needs it).
    """

    __slots__ = ("conversation", "cwmp_ns", "use_cwmp_version", "_last_cpe_id", "_ids")

    def __init__(self, id_prefix: str = "acs") -> None:
        self.conversation = Conversation()
        self.cwmp_ns = CWMP_NS_1_0
        self.use_cwmp_version: str | None = None
        self._last_cpe_id: str | None = None
        self._ids = (f"{id_prefix}-{n}" for n in itertools.count(1))

    @property
    def state(self) -> State:
        return self.conversation.state

    def receive(self, envelope: Envelope | None) -> AcsEvent:
        """Feed what the CPE posted (None for an empty POST)."""
        message = envelope.body if envelope is not None else None
        outstanding = self.conversation.outstanding
        event = self.conversation.cpe_sends(message)
        if envelope is not None:
            self._last_cpe_id = envelope.cwmp_id
        if event is Event.INFORM:
            assert envelope is not None and isinstance(message, m.Inform)
            self.cwmp_ns = envelope.cwmp_ns
            self.use_cwmp_version = negotiate_cwmp_version(envelope.supported_cwmp_versions)
            return InformReceived(message, envelope)
        if event is Event.CPE_REQUEST:
            assert message is not None
            return RequestReceived(message)
        if event is Event.EMPTY_POST:
            return CpeRequestsDone()
        assert message is not None and outstanding is not None
        return ResponseReceived(outstanding, message)

    def send(self, message: m.Message | None) -> Envelope | None:
        """Record what the ACS sends; returns the envelope to serialize (None: empty 204)."""
        event = self.conversation.acs_sends(message)
        if message is None:
            return None
        envelope = Envelope(body=message, cwmp_ns=self.cwmp_ns)
        if event is Event.ACS_REQUEST:
            envelope.cwmp_id = next(self._ids)
        else:
            envelope.cwmp_id = self._last_cpe_id
            if event is Event.INFORM_RESPONSE:
                envelope.use_cwmp_version = self.use_cwmp_version
        return envelope

    def abandon(self) -> None:
        self.conversation.abandon()
