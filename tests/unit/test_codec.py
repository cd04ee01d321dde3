"""The CWMP SOAP codec: round trips and real-world-shaped input.

``serialize_envelope`` then ``parse_envelope`` gives back an equal ``Envelope``
for every message class in every namespace; quirky but legal input from real
CPEs (prefixes, default namespaces, missing xsi:type, odd booleans and times)
parses to the expected typed values.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acs.cwmp import messages as m
from acs.cwmp.soap import (
    CWMP_NS_1_0,
    CWMP_NS_1_1,
    CWMP_NS_1_2,
    CwmpParseError,
    Envelope,
    format_time,
    parse_envelope,
    serialize_envelope,
)
from tests import xsd
from tests.unit.test_codec_schema import SAMPLES

NAMESPACES = [CWMP_NS_1_0, CWMP_NS_1_1, CWMP_NS_1_2]


def roundtrip(envelope: Envelope) -> Envelope:
    parsed = parse_envelope(serialize_envelope(envelope))
    assert parsed is not None
    return parsed


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("ns", NAMESPACES)
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_message_round_trips(name: str, ns: str) -> None:
    envelope = Envelope(body=SAMPLES[name], cwmp_id="cpe-17 ", cwmp_ns=ns)
    parsed = roundtrip(envelope)
    assert type(parsed.body) is type(SAMPLES[name])
    assert parsed == envelope


@pytest.mark.parametrize("ns", NAMESPACES)
def test_faults_round_trip(ns: str) -> None:
    for fault in [
        m.Fault(8005, "Retry request"),
        m.Fault(9002, ""),
        m.Fault(
            9003,
            "Invalid arguments",
            [
                m.SetParameterValuesFault("Device.WiFi.SSID.1.SSID", 9007, "too long"),
                m.SetParameterValuesFault("Device.DeviceInfo.Manufacturer", 9008, ""),
            ],
        ),
        m.Fault(9899, "vendor: flash busy"),
    ]:
        envelope = Envelope(body=fault, cwmp_id="7", cwmp_ns=ns)
        assert roundtrip(envelope) == envelope


def test_headers_round_trip() -> None:
    envelope = Envelope(
        body=m.InformResponse(1),
        cwmp_id="\n abc-1 \n",
        cwmp_ns=CWMP_NS_1_2,
        hold_requests=True,
        session_timeout=45,
        supported_cwmp_versions="1.0,1.4",
        use_cwmp_version="1.4",
    )
    assert roundtrip(envelope) == envelope
    xsd.validate_envelope(serialize_envelope(envelope))


def test_envelope_without_header_round_trips() -> None:
    envelope = Envelope(body=m.GetRPCMethods(), cwmp_ns=CWMP_NS_1_1)
    data = serialize_envelope(envelope)
    assert b"Header" not in data
    assert roundtrip(envelope) == envelope


def test_times_are_sent_in_utc_and_keep_their_instant() -> None:
    local = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-8)))
    body = m.TransferComplete("k", m.FaultStruct(), local, None)
    data = serialize_envelope(Envelope(body=body))
    assert b"<StartTime>2024-01-02T11:04:05Z</StartTime>" in data
    assert b"<CompleteTime>0001-01-01T00:00:00Z</CompleteTime>" in data  # Unknown Time
    parsed = parse_envelope(data)
    assert parsed is not None and isinstance(parsed.body, m.TransferComplete)
    assert parsed.body.start_time == local and parsed.body.start_time.tzinfo is not None
    assert parsed.body.complete_time is None


def test_format_time() -> None:
    assert format_time(None) == "0001-01-01T00:00:00Z"
    assert format_time(datetime(2024, 5, 6, 7, 8, 9)) == "2024-05-06T07:08:09Z"  # naive = UTC
    # sub-second precision is not sent
    assert format_time(datetime(2024, 5, 6, 7, 8, 9, 999999, UTC)) == "2024-05-06T07:08:09Z"


def test_serializing_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError):
        serialize_envelope(Envelope(body=m.UnknownMethod(name="X_Foo")))


def test_fault_type_follows_the_spec_tables() -> None:
    client = serialize_envelope(Envelope(body=m.Fault(9005, "Invalid parameter name")))
    server = serialize_envelope(Envelope(body=m.Fault(9002, "Internal error")))
    assert b"<faultcode>Client</faultcode>" in client
    assert b"<faultcode>Server</faultcode>" in server
    assert b"<faultstring>CWMP fault</faultstring>" in client


# ---------------------------------------------------------------- real-world shapes

TR098_INFORM_1_0 = b"""<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/"
    xmlns:xsd="http://www.w3.org/2001/XMLSchema"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:cwmp="urn:dslforum-org:cwmp-1-0">
  <SOAP-ENV:Header>
    <cwmp:ID SOAP-ENV:mustUnderstand="1">1804289383</cwmp:ID>
  </SOAP-ENV:Header>
  <SOAP-ENV:Body SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
    <cwmp:Inform>
      <DeviceId>
        <Manufacturer>Thomson</Manufacturer>
        <OUI>00147F</OUI>
        <ProductClass>TG585v7</ProductClass>
        <SerialNumber>CP0923JT1QX</SerialNumber>
      </DeviceId>
      <Event SOAP-ENC:arrayType="cwmp:EventStruct[2]">
        <EventStruct>
          <EventCode>0 BOOTSTRAP</EventCode>
          <CommandKey></CommandKey>
        </EventStruct>
        <EventStruct>
          <EventCode>1 BOOT</EventCode>
          <CommandKey/>
        </EventStruct>
      </Event>
      <MaxEnvelopes>1</MaxEnvelopes>
      <CurrentTime>2009-06-01T12:00:01+02:00</CurrentTime>
      <RetryCount>0</RetryCount>
      <ParameterList SOAP-ENC:arrayType="cwmp:ParameterValueStruct[5]">
        <ParameterValueStruct>
          <Name>InternetGatewayDevice.DeviceSummary</Name>
          <Value xsi:type="xsd:string"
            >InternetGatewayDevice:1.1[](Baseline:1, EthernetLAN:1)</Value>
        </ParameterValueStruct>
        <ParameterValueStruct>
          <Name>InternetGatewayDevice.DeviceInfo.SpecVersion</Name>
          <Value xsi:type="xsd:string">1.0</Value>
        </ParameterValueStruct>
        <ParameterValueStruct>
          <Name>InternetGatewayDevice.DeviceInfo.SoftwareVersion</Name>
          <Value xsi:type="xsd:string">8.2.7.6</Value>
        </ParameterValueStruct>
        <ParameterValueStruct>
          <Name>InternetGatewayDevice.ManagementServer.ConnectionRequestURL</Name>
          <Value xsi:type="xsd:string">http://192.0.2.10:51005/</Value>
        </ParameterValueStruct>
        <ParameterValueStruct>
          <Name>InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.ExternalIPAddress</Name>
          <Value xsi:type="xsd:string">192.0.2.10</Value>
        </ParameterValueStruct>
      </ParameterList>
    </cwmp:Inform>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>
"""


def test_cwmp_1_0_tr098_inform() -> None:
    xsd.validate_envelope(TR098_INFORM_1_0)  # the sample itself is valid CWMP 1.0
    env = parse_envelope(TR098_INFORM_1_0)
    assert env is not None
    assert env.cwmp_id == "1804289383" and env.cwmp_ns == CWMP_NS_1_0
    inform = env.body
    assert isinstance(inform, m.Inform)
    assert inform.device_id == m.DeviceIdStruct("Thomson", "00147F", "TG585v7", "CP0923JT1QX")
    assert inform.events == [m.EventStruct("0 BOOTSTRAP", ""), m.EventStruct("1 BOOT", "")]
    assert inform.max_envelopes == 1 and inform.retry_count == 0
    assert inform.current_time == datetime(2009, 6, 1, 10, 0, 1, tzinfo=UTC)
    assert inform.current_time.utcoffset() == timedelta(hours=2)
    assert len(inform.parameter_list) == 5
    assert inform.parameter_list[3] == m.ParameterValueStruct(
        "InternetGatewayDevice.ManagementServer.ConnectionRequestURL",
        "http://192.0.2.10:51005/",
        "xsd:string",
    )
    # and it goes back out as valid CWMP 1.0
    xsd.validate_envelope(serialize_envelope(env))


TR181_INFORM_1_4 = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
 xmlns:cwmp="urn:dslforum-org:cwmp-1-2">
<soapenv:Header>
<cwmp:ID soapenv:mustUnderstand="1">a1b2c3</cwmp:ID>
<cwmp:SupportedCWMPVersions soapenv:mustUnderstand="0"
>1.0,1.1,1.2,1.3,1.4</cwmp:SupportedCWMPVersions>
</soapenv:Header>
<soapenv:Body>
<cwmp:Inform>
<DeviceId><Manufacturer>Zyxel</Manufacturer><OUI>A0E4CB</OUI>
<ProductClass>EX5601-T0</ProductClass><SerialNumber>S220Y41012345</SerialNumber></DeviceId>
<Event soapenc:arrayType="cwmp:EventStruct[3]">
<EventStruct><EventCode>2 PERIODIC</EventCode><CommandKey></CommandKey></EventStruct>
<EventStruct><EventCode>4 VALUE CHANGE</EventCode><CommandKey></CommandKey></EventStruct>
<EventStruct><EventCode>M Download</EventCode><CommandKey>fw-5.50</CommandKey></EventStruct>
</Event>
<MaxEnvelopes>1</MaxEnvelopes>
<CurrentTime>2024-03-09T23:59:59.123456789Z</CurrentTime>
<RetryCount>3</RetryCount>
<ParameterList soapenc:arrayType="cwmp:ParameterValueStruct[4]">
<ParameterValueStruct><Name>Device.RootDataModelVersion</Name>
<Value xsi:type="xsd:string">2.17</Value></ParameterValueStruct>
<ParameterValueStruct><Name>Device.DeviceInfo.UpTime</Name>
<Value xsi:type="xsd:unsignedInt">3600</Value></ParameterValueStruct>
<ParameterValueStruct><Name>Device.WiFi.SSID.1.SSID</Name>
<Value xsi:type="xsd:string">Caf\u00e9 &amp; &lt;B\u00e4r&gt; \U0001f600</Value>
</ParameterValueStruct>
<ParameterValueStruct><Name>Device.ManagementServer.PeriodicInformEnable</Name>
<Value xsi:type="xsd:boolean">1</Value></ParameterValueStruct>
</ParameterList>
</cwmp:Inform>
</soapenv:Body>
</soapenv:Envelope>
""".encode()


def test_cwmp_1_4_tr181_inform() -> None:
    xsd.validate_envelope(TR181_INFORM_1_4)
    env = parse_envelope(TR181_INFORM_1_4)
    assert env is not None
    assert env.cwmp_ns == CWMP_NS_1_2 and env.cwmp_id == "a1b2c3"
    assert env.supported_cwmp_versions == "1.0,1.1,1.2,1.3,1.4"
    assert env.use_cwmp_version is None and env.session_timeout is None
    inform = env.body
    assert isinstance(inform, m.Inform)
    assert [e.event_code for e in inform.events] == ["2 PERIODIC", "4 VALUE CHANGE", "M Download"]
    assert inform.events[2].command_key == "fw-5.50"
    assert inform.retry_count == 3
    assert inform.current_time == datetime(2024, 3, 9, 23, 59, 59, 123456, tzinfo=UTC)
    values = {p.name: (p.value, p.xsd_type) for p in inform.parameter_list}
    assert values["Device.DeviceInfo.UpTime"] == ("3600", "xsd:unsignedInt")
    assert values["Device.WiFi.SSID.1.SSID"] == ("Caf\u00e9 & <B\u00e4r> \U0001f600", "xsd:string")
    assert values["Device.ManagementServer.PeriodicInformEnable"] == ("1", "xsd:boolean")


def _doc(body: str, header: str = "", extra_ns: str = "") -> bytes:
    return (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xmlns:cwmp="urn:dslforum-org:cwmp-1-1" {extra_ns}>'
        + (f"<s:Header>{header}</s:Header>" if header else "")
        + f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def test_odd_prefixes_everywhere() -> None:
    data = b"""<E:Envelope xmlns:E="http://schemas.xmlsoap.org/soap/envelope/"
        xmlns:T="http://www.w3.org/2001/XMLSchema"
        xmlns:I="http://www.w3.org/2001/XMLSchema-instance"
        xmlns:dslf="urn:dslforum-org:cwmp-1-1">
      <E:Header><dslf:ID E:mustUnderstand="1">odd-1</dslf:ID></E:Header>
      <E:Body><dslf:GetParameterValuesResponse>
        <ParameterList><ParameterValueStruct><Name>Device.DeviceInfo.UpTime</Name>
        <Value I:type="T:unsignedInt">17</Value></ParameterValueStruct></ParameterList>
      </dslf:GetParameterValuesResponse></E:Body></E:Envelope>"""
    env = parse_envelope(data)
    assert env is not None and env.cwmp_id == "odd-1" and env.cwmp_ns == CWMP_NS_1_1
    assert env.body == m.GetParameterValuesResponse(
        [m.ParameterValueStruct("Device.DeviceInfo.UpTime", "17", "xsd:unsignedInt")]
    )
    # the input lacks the soap-enc:arrayType the schema requires; we accept it,
    # and what we send back is valid
    with pytest.raises(AssertionError, match="arrayType"):
        xsd.validate_envelope(data)
    xsd.validate_envelope(serialize_envelope(env))


def test_rpc_element_without_prefix_takes_namespace_from_id() -> None:
    env = parse_envelope(
        _doc(
            "<GetRPCMethodsResponse><MethodList><string>Inform</string>"
            "<string>GetRPCMethods</string></MethodList></GetRPCMethodsResponse>",
            header='<cwmp:ID s:mustUnderstand="1">n1</cwmp:ID>',
        )
    )
    assert env is not None and env.cwmp_ns == CWMP_NS_1_1 and env.cwmp_id == "n1"
    assert env.body == m.GetRPCMethodsResponse(["Inform", "GetRPCMethods"])


def test_rpc_element_without_any_namespace_defaults_to_1_0() -> None:
    env = parse_envelope(_doc("<RebootResponse/>"))
    assert env is not None and env.cwmp_ns == CWMP_NS_1_0 and env.cwmp_id is None
    assert env.body == m.RebootResponse()


def test_default_namespace_on_rpc() -> None:
    env = parse_envelope(
        _doc(
            '<AddObjectResponse xmlns="urn:dslforum-org:cwmp-1-2">'
            "<InstanceNumber>4</InstanceNumber><Status>1</Status></AddObjectResponse>",
            header='<cwmp:ID s:mustUnderstand="1">d</cwmp:ID>',
        )
    )
    assert env is not None
    assert env.cwmp_ns == CWMP_NS_1_2  # the body's namespace wins over the header's
    assert env.body == m.AddObjectResponse(instance_number=4, status=1)


def test_xsi_type_with_other_prefixes_and_missing_xsi_type() -> None:
    env = parse_envelope(
        _doc(
            "<cwmp:GetParameterValuesResponse><ParameterList>"
            '<ParameterValueStruct><Name>A</Name><Value xsi:type="xs:int">-3</Value>'
            "</ParameterValueStruct>"
            "<ParameterValueStruct><Name>B</Name><Value>plain</Value></ParameterValueStruct>"
            "<ParameterValueStruct><Name>C</Name><Value/></ParameterValueStruct>"
            '<ParameterValueStruct><Name>D</Name><Value xsi:type="dateTime">'
            "2024-01-01T00:00:00Z</Value></ParameterValueStruct>"
            '<ParameterValueStruct><Value old:type="xsd:boolean">true</Value><Name>E</Name>'
            "</ParameterValueStruct>"
            "</ParameterList></cwmp:GetParameterValuesResponse>",
            extra_ns='xmlns:xs="http://www.w3.org/2001/XMLSchema" '
            'xmlns:old="http://www.w3.org/1999/XMLSchema-instance"',
        )
    )
    assert env is not None and isinstance(env.body, m.GetParameterValuesResponse)
    assert env.body.parameter_list == [
        m.ParameterValueStruct("A", "-3", "xsd:int"),
        m.ParameterValueStruct("B", "plain", "xsd:string"),
        m.ParameterValueStruct("C", "", "xsd:string"),
        m.ParameterValueStruct("D", "2024-01-01T00:00:00Z", "xsd:dateTime"),
        m.ParameterValueStruct("E", "true", "xsd:boolean"),  # 1999 xsi, fields reversed
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("0", False),
        ("true", True),
        ("false", False),
        ("FALSE", False),
        ("True", True),
        (" true\n", True),
    ],
)
def test_booleans(text: str, expected: bool) -> None:
    env = parse_envelope(
        _doc(
            "<cwmp:GetParameterNamesResponse><ParameterList><ParameterInfoStruct>"
            f"<Name>Device.X</Name><Writable>{text}</Writable>"
            "</ParameterInfoStruct></ParameterList></cwmp:GetParameterNamesResponse>"
        )
    )
    assert env is not None
    assert env.body == m.GetParameterNamesResponse([m.ParameterInfoStruct("Device.X", expected)])


@pytest.mark.parametrize("text", ["yes", "2", "", "t"])
def test_bad_booleans_are_rejected(text: str) -> None:
    with pytest.raises(CwmpParseError, match="Writable"):
        parse_envelope(
            _doc(
                "<cwmp:GetParameterNamesResponse><ParameterList><ParameterInfoStruct>"
                f"<Name>Device.X</Name><Writable>{text}</Writable>"
                "</ParameterInfoStruct></ParameterList></cwmp:GetParameterNamesResponse>"
            )
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-02-29T12:34:56Z", datetime(2024, 2, 29, 12, 34, 56, tzinfo=UTC)),
        ("2024-02-29T12:34:56", datetime(2024, 2, 29, 12, 34, 56, tzinfo=UTC)),  # no zone: UTC
        (
            "2024-02-29T12:34:56+05:30",
            datetime(2024, 2, 29, 12, 34, 56, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        ),
        (
            "2024-02-29T12:34:56-0800",
            datetime(2024, 2, 29, 12, 34, 56, tzinfo=timezone(timedelta(hours=-8))),
        ),
        ("2024-02-29T12:34:56.5Z", datetime(2024, 2, 29, 12, 34, 56, 500000, tzinfo=UTC)),
        (
            "2024-02-29T12:34:56.123456789+00:00",
            datetime(2024, 2, 29, 12, 34, 56, 123456, tzinfo=UTC),
        ),
        (" 2024-02-29T12:34:56Z\n", datetime(2024, 2, 29, 12, 34, 56, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", None),
        ("0001-01-01T00:00:00", None),
        ("", None),
    ],
)
def test_times(text: str, expected: datetime | None) -> None:
    env = parse_envelope(
        _doc(
            "<cwmp:DownloadResponse><Status>0</Status>"
            f"<StartTime>{text}</StartTime><CompleteTime>{text}</CompleteTime></cwmp:DownloadResponse>"
        )
    )
    assert env is not None and isinstance(env.body, m.DownloadResponse)
    assert env.body.start_time == expected and env.body.complete_time == expected
    if expected is not None:
        assert env.body.start_time is not None
        assert env.body.start_time.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "2024-13-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01 00:00:00Z",
        "2024-01-01T00:00:00+25:00",
        "\uff12024-01-01T00:00:00Z",
    ],
)
def test_bad_times_are_rejected(text: str) -> None:
    with pytest.raises(CwmpParseError, match="StartTime"):
        parse_envelope(
            _doc(
                f"<cwmp:DownloadResponse><Status>0</Status><StartTime>{text}</StartTime>"
                "</cwmp:DownloadResponse>"
            )
        )


@pytest.mark.parametrize("text", ["1_0", "\uff11", "0x10", "1.0", "", " ", "+-1"])
def test_bad_integers_are_rejected(text: str) -> None:
    with pytest.raises(CwmpParseError, match="Status"):
        parse_envelope(
            _doc(
                f"<cwmp:SetParameterValuesResponse><Status>{text}</Status>"
                "</cwmp:SetParameterValuesResponse>"
            )
        )


def test_integers_tolerate_whitespace_and_sign() -> None:
    env = parse_envelope(
        _doc(
            "<cwmp:AddObjectResponse><InstanceNumber>\n +12 </InstanceNumber>"
            "<Status>0</Status></cwmp:AddObjectResponse>"
        )
    )
    assert env is not None and env.body == m.AddObjectResponse(12, 0)


@pytest.mark.parametrize("data", [b"", b"   ", b"\r\n\t \n"])
def test_empty_post_is_none(data: bytes) -> None:
    assert parse_envelope(data) is None


def test_empty_soap_body_is_none() -> None:
    assert parse_envelope(_doc("", header='<cwmp:ID s:mustUnderstand="1">x</cwmp:ID>')) is None
    assert parse_envelope(_doc("\n  <!-- nothing -->\n ")) is None


def test_unknown_rpc_gives_unknown_method() -> None:
    env = parse_envelope(
        _doc(
            "<cwmp:X_ACME_Frobnicate><Level>11</Level></cwmp:X_ACME_Frobnicate>",
            header='<cwmp:ID s:mustUnderstand="1">u-9</cwmp:ID>',
        )
    )
    assert env is not None
    assert env.body == m.UnknownMethod(name="X_ACME_Frobnicate")
    assert env.cwmp_id == "u-9" and env.cwmp_ns == CWMP_NS_1_1


def test_fields_in_any_order_and_vendor_extras_are_ignored() -> None:
    env = parse_envelope(
        _doc(
            "<cwmp:TransferComplete><X_ACME_Slot>2</X_ACME_Slot>"
            "<CompleteTime>2024-01-01T00:01:00Z</CompleteTime>"
            "<FaultStruct><FaultString></FaultString><FaultCode>0</FaultCode></FaultStruct>"
            "<StartTime>2024-01-01T00:00:00Z</StartTime><CommandKey>k1</CommandKey>"
            "</cwmp:TransferComplete>"
        )
    )
    assert env is not None
    assert env.body == m.TransferComplete(
        "k1",
        m.FaultStruct(0, ""),
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(2024, 1, 1, 0, 1, tzinfo=UTC),
    )


def test_inform_with_only_required_fields_gets_defaults() -> None:
    env = parse_envelope(
        _doc(
            "<cwmp:Inform><DeviceId><Manufacturer>M</Manufacturer><OUI>000000</OUI>"
            "<SerialNumber>S</SerialNumber></DeviceId><Event/></cwmp:Inform>"
        )
    )
    assert env is not None
    assert env.body == m.Inform(m.DeviceIdStruct("M", "000000", "", "S"), [], 0, None, 0, [])


SOAP_FAULT = b"""<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:cwmp="urn:dslforum-org:cwmp-1-2">
 <soapenv:Header><cwmp:ID soapenv:mustUnderstand="1">acs-55</cwmp:ID></soapenv:Header>
 <soapenv:Body>
  <soapenv:Fault>
   <faultcode>Client</faultcode>
   <faultstring>CWMP fault</faultstring>
   <detail>
    <cwmp:Fault>
     <FaultCode>9003</FaultCode>
     <FaultString>Invalid arguments</FaultString>
     <SetParameterValuesFault>
      <ParameterName>Device.WiFi.SSID.1.SSID</ParameterName>
      <FaultCode>9007</FaultCode>
      <FaultString>Value too long</FaultString>
     </SetParameterValuesFault>
     <SetParameterValuesFault>
      <ParameterName>Device.DeviceInfo.Manufacturer</ParameterName>
      <FaultCode>9008</FaultCode>
     </SetParameterValuesFault>
    </cwmp:Fault>
   </detail>
  </soapenv:Fault>
 </soapenv:Body>
</soapenv:Envelope>"""


def test_soap_fault_with_cwmp_fault_detail() -> None:
    xsd.validate_envelope(SOAP_FAULT)
    env = parse_envelope(SOAP_FAULT)
    assert env is not None and env.cwmp_id == "acs-55" and env.cwmp_ns == CWMP_NS_1_2
    assert env.body == m.Fault(
        9003,
        "Invalid arguments",
        [
            m.SetParameterValuesFault("Device.WiFi.SSID.1.SSID", 9007, "Value too long"),
            m.SetParameterValuesFault("Device.DeviceInfo.Manufacturer", 9008, ""),
        ],
    )


def test_soap_fault_namespace_comes_from_the_detail() -> None:
    data = SOAP_FAULT.replace(
        b'<soapenv:Header><cwmp:ID soapenv:mustUnderstand="1">acs-55</cwmp:ID></soapenv:Header>',
        b"",
    ).replace(b"cwmp-1-2", b"cwmp-1-1")
    env = parse_envelope(data)
    assert env is not None and env.cwmp_ns == CWMP_NS_1_1 and env.cwmp_id is None


def test_bare_soap_fault_keeps_its_faultstring() -> None:
    env = parse_envelope(
        _doc(
            "<s:Fault><faultcode>s:Server</faultcode><faultstring>out of memory</faultstring>"
            "</s:Fault>"
        )
    )
    assert env is not None and env.body == m.Fault(0, "out of memory")


def test_cwmp_fault_without_fault_code_is_rejected() -> None:
    with pytest.raises(CwmpParseError, match="FaultCode"):
        parse_envelope(
            _doc(
                "<s:Fault><faultcode>Client</faultcode><faultstring>x</faultstring>"
                "<detail><cwmp:Fault><FaultString>?</FaultString></cwmp:Fault>"
                "</detail></s:Fault>"
            )
        )


def test_hold_requests_header() -> None:
    for text, expected in [("1", True), ("true", True), ("TRUE", True), ("0", False)]:
        env = parse_envelope(
            _doc(
                "<cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse>",
                header=f'<cwmp:HoldRequests s:mustUnderstand="1">{text}</cwmp:HoldRequests>',
            )
        )
        assert env is not None and env.hold_requests is expected
    data = serialize_envelope(Envelope(body=m.InformResponse(), hold_requests=True))
    assert b'<cwmp:HoldRequests soap-env:mustUnderstand="1">1</cwmp:HoldRequests>' in data
    no_hold = serialize_envelope(Envelope(body=m.InformResponse()))
    assert b"HoldRequests" not in no_hold


def test_session_timeout_and_use_cwmp_version_headers() -> None:
    env = parse_envelope(
        _doc(
            "<cwmp:GetRPCMethods/>",
            header="<cwmp:SessionTimeout>120</cwmp:SessionTimeout>"
            '<cwmp:UseCWMPVersion s:mustUnderstand="1"> 1.4 </cwmp:UseCWMPVersion>',
        )
    )
    assert env is not None
    assert env.session_timeout == 120 and env.use_cwmp_version == "1.4"


# ---------------------------------------------------------------- property-based


# XML 1.0 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]
def _xml_char_ok(c: str) -> bool:
    o = ord(c)
    return (
        o in (0x9, 0xA, 0xD)
        or 0x20 <= o <= 0xD7FF
        or 0xE000 <= o <= 0xFFFD
        or 0x10000 <= o <= 0x10FFFF
    )


xml_text = st.text(
    alphabet=st.characters(codec="utf-8").filter(_xml_char_ok)
    | st.sampled_from("<>&'\"\r\n\t ]]>"),
    max_size=40,
)
xsd_types = st.sampled_from(
    [
        "xsd:string",
        "xsd:int",
        "xsd:unsignedInt",
        "xsd:boolean",
        "xsd:dateTime",
        "xsd:long",
        "xsd:unsignedLong",
        "xsd:base64",
        "xsd:hexBinary",
    ]
)
pvs = st.builds(m.ParameterValueStruct, xml_text, xml_text, xsd_types)


@settings(max_examples=150, deadline=None)
@given(params=st.lists(pvs, max_size=8), ns=st.sampled_from(NAMESPACES), cwmp_id=xml_text)
def test_parameter_values_round_trip(
    params: list[m.ParameterValueStruct], ns: str, cwmp_id: str
) -> None:
    for body in (m.GetParameterValuesResponse(params), m.SetParameterValues(params, "k")):
        envelope = Envelope(body=body, cwmp_id=cwmp_id, cwmp_ns=ns)
        assert roundtrip(envelope) == envelope


def test_text_outside_xml_1_0_cannot_be_sent() -> None:
    body = m.GetParameterValuesResponse([m.ParameterValueStruct("Device.X", "bell\x07")])
    with pytest.raises(ValueError):
        serialize_envelope(Envelope(body=body))
