"""The CWMP session state machine: every transition, every refusal."""

from __future__ import annotations

import itertools

import pytest

from acs.cwmp import messages as m
from acs.cwmp.session import (
    TRANSITIONS,
    AcsSession,
    Conversation,
    CpeRequestsDone,
    Event,
    InformReceived,
    ProtocolError,
    RequestReceived,
    ResponseReceived,
    State,
    negotiate_cwmp_version,
)
from acs.cwmp.soap import CWMP_NS_1_0, CWMP_NS_1_2, Envelope


def inform() -> m.Inform:
    return m.Inform(
        device_id=m.DeviceIdStruct("Acme", "001122", "HGW", "SN1"),
        events=[m.EventStruct("2 PERIODIC")],
        max_envelopes=1,
        current_time=None,
        retry_count=0,
        parameter_list=[],
    )


# One sample message per event, to drive the conversation table exhaustively.
SAMPLES: dict[Event, tuple[str, m.Message | None]] = {
    Event.INFORM: ("cpe", inform()),
    Event.CPE_REQUEST: ("cpe", m.TransferComplete("k", m.FaultStruct(), None, None)),
    Event.EMPTY_POST: ("cpe", None),
    Event.CPE_RESPONSE: ("cpe", m.GetParameterValuesResponse([])),
    Event.CPE_FAULT: ("cpe", m.Fault(9005, "Invalid parameter name")),
    Event.INFORM_RESPONSE: ("acs", m.InformResponse()),
    Event.ACS_RESPONSE: ("acs", m.TransferCompleteResponse()),
    Event.ACS_FAULT: ("acs", m.Fault(8005, "Retry request")),
    Event.ACS_REQUEST: ("acs", m.GetParameterValues(["Device.DeviceInfo."])),
    Event.EMPTY_RESPONSE: ("acs", None),
}

# A path of events that reaches each state, with the outstanding request that
# state implies (so that answers match).
PATHS: dict[State, list[Event]] = {
    State.START: [],
    State.INFORM_SENT: [Event.INFORM],
    State.CPE_TURN: [Event.INFORM, Event.INFORM_RESPONSE],
    State.CPE_REQUEST_SENT: [Event.INFORM, Event.INFORM_RESPONSE, Event.CPE_REQUEST],
    State.ACS_TURN: [Event.INFORM, Event.INFORM_RESPONSE, Event.EMPTY_POST],
    State.ACS_REQUEST_SENT: [
        Event.INFORM,
        Event.INFORM_RESPONSE,
        Event.EMPTY_POST,
        Event.ACS_REQUEST,
    ],
    State.CLOSED: [
        Event.INFORM,
        Event.INFORM_RESPONSE,
        Event.EMPTY_POST,
        Event.EMPTY_RESPONSE,
    ],
}


def feed(conv: Conversation, event: Event) -> Event:
    side, message = SAMPLES[event]
    return conv.cpe_sends(message) if side == "cpe" else conv.acs_sends(message)


def at(state: State) -> Conversation:
    conv = Conversation()
    for event in PATHS[state]:
        feed(conv, event)
    assert conv.state is state
    return conv


SENDABLE = [e for e in Event if e is not Event.ABANDON]


@pytest.mark.parametrize(
    ("state", "event"),
    list(itertools.product(list(PATHS), SENDABLE)),
    ids=lambda v: v.name,
)
def test_every_state_event_pair_follows_the_table(state: State, event: Event) -> None:
    conv = at(state)
    target = TRANSITIONS.get((state, event))
    if target is None:
        with pytest.raises(ProtocolError) as err:
            feed(conv, event)
        assert err.value.state is state and err.value.event is event
        assert conv.state is State.ERROR
        # a broken session accepts nothing more
        with pytest.raises(ProtocolError):
            feed(conv, Event.EMPTY_POST)
    else:
        assert feed(conv, event) is event
        assert conv.state is target


def test_abandon_closes_any_open_state() -> None:
    for state in PATHS:
        conv = at(state)
        conv.abandon()
        assert conv.state is State.CLOSED
        assert not conv.is_open


def test_refusals_name_the_broken_rule() -> None:
    with pytest.raises(ProtocolError, match="must start with Inform"):
        Conversation().cpe_sends(None)
    with pytest.raises(ProtocolError, match="ACS sent no request"):
        at(State.CPE_TURN).cpe_sends(m.GetParameterValuesResponse([]))
    with pytest.raises(ProtocolError, match="Inform may only open a session"):
        at(State.ACS_TURN).cpe_sends(inform())
    with pytest.raises(ProtocolError, match="after the session ended"):
        at(State.CLOSED).cpe_sends(None)


def test_answer_must_match_the_outstanding_request() -> None:
    conv = at(State.ACS_REQUEST_SENT)  # outstanding: GetParameterValues
    with pytest.raises(ProtocolError, match="does not answer the outstanding GetParameterValues"):
        conv.cpe_sends(m.SetParameterValuesResponse(0))
    conv = at(State.CPE_REQUEST_SENT)  # outstanding: TransferComplete
    with pytest.raises(ProtocolError, match="does not answer"):
        conv.acs_sends(m.KickedResponse())


def test_acs_session_runs_a_whole_session() -> None:
    acs = AcsSession(id_prefix="t")
    env = Envelope(body=inform(), cwmp_id="cpe-1", cwmp_ns=CWMP_NS_1_2)
    event = acs.receive(env)
    assert isinstance(event, InformReceived) and event.inform.device_id.serial_number == "SN1"
    reply = acs.send(m.InformResponse())
    assert reply is not None
    assert reply.cwmp_id == "cpe-1" and reply.cwmp_ns == CWMP_NS_1_2 and not reply.hold_requests

    tc = m.TransferComplete("k1", m.FaultStruct(), None, None)
    assert isinstance(acs.receive(Envelope(body=tc, cwmp_id="cpe-2")), RequestReceived)
    answer = acs.send(m.TransferCompleteResponse())
    assert answer is not None and answer.cwmp_id == "cpe-2"

    assert isinstance(acs.receive(None), CpeRequestsDone)
    req = acs.send(m.GetParameterValues(["Device.DeviceInfo.SoftwareVersion"]))
    assert req is not None and req.cwmp_id == "t-1"
    got = acs.receive(Envelope(body=m.GetParameterValuesResponse([]), cwmp_id="t-1"))
    assert isinstance(got, ResponseReceived)
    assert isinstance(got.request, m.GetParameterValues)

    fault = m.Fault(9005, "Invalid parameter name")
    acs.send(m.Reboot("ck"))
    got = acs.receive(Envelope(body=fault, cwmp_id="t-2"))
    assert isinstance(got, ResponseReceived) and got.response is fault

    assert acs.send(None) is None
    assert acs.state is State.CLOSED


def test_fault_to_inform_ends_the_session() -> None:
    acs = AcsSession()
    acs.receive(Envelope(body=inform(), cwmp_ns=CWMP_NS_1_0))
    env = acs.send(m.Fault(8005, "Retry request"))
    assert env is not None and isinstance(env.body, m.Fault)
    assert acs.state is State.CLOSED


def test_cwmp_1_4_version_negotiation() -> None:
    assert negotiate_cwmp_version("1.0,1.1,1.2,1.3,1.4") == "1.4"
    assert negotiate_cwmp_version("1.0, 1.2") == "1.2"
    assert negotiate_cwmp_version("2.0") is None
    assert negotiate_cwmp_version(None) is None
    acs = AcsSession()
    env = Envelope(body=inform(), cwmp_ns=CWMP_NS_1_2, supported_cwmp_versions="1.0,1.4")
    acs.receive(env)
    reply = acs.send(m.InformResponse())
    assert reply is not None and reply.use_cwmp_version == "1.4"


def test_only_one_outstanding_request_at_a_time() -> None:
    conv = at(State.ACS_REQUEST_SENT)
    with pytest.raises(ProtocolError):
        conv.acs_sends(m.Reboot(""))
