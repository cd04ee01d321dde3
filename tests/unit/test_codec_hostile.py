"""Hostile and broken input: the codec refuses it with CwmpParseError, fast,
without reading files, expanding entities or touching the network."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from acs.cwmp import messages as m
from acs.cwmp import soap
from acs.cwmp.soap import CWMP_NS_1_2, CwmpParseError, parse_envelope
from tests.unit.test_codec import TR181_INFORM_1_4

ENV_OPEN = (
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
    'xmlns:cwmp="urn:dslforum-org:cwmp-1-2">'
)
ID = '<cwmp:ID s:mustUnderstand="1">h-1</cwmp:ID>'


def doc(body: str, header: str = ID) -> bytes:
    head = f"<s:Header>{header}</s:Header>" if header else ""
    return f"{ENV_OPEN}{head}<s:Body>{body}</s:Body></s:Envelope>".encode()


def refused(data: bytes, match: str | None = None) -> CwmpParseError:
    with pytest.raises(CwmpParseError, match=match) as info:
        parse_envelope(data)
    assert info.value.fault_code == 8003
    return info.value


# ---------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    "data",
    [
        b"<",
        b"not xml at all",
        b"<s:Envelope xmlns:s='http://schemas.xmlsoap.org/soap/envelope/'><s:Body>",
        doc("<cwmp:Reboot><CommandKey>x</cwmp:Reboot>"),
        doc("<cwmp:Reboot><CommandKey>&undefined;</CommandKey></cwmp:Reboot>"),
        doc("<cwmp:Reboot><CommandKey>&#0;</CommandKey></cwmp:Reboot>"),
        doc("<cwmp:Reboot><CommandKey>\x01</CommandKey></cwmp:Reboot>"),
        doc('<cwmp:Reboot a="1" a="2"/>'),
        doc("<nope:Reboot/>"),
        b"\xff\xfe\x00\x00garbage",
        b"<?xml version='1.0' encoding='x-unknown'?><a/>",
        "<a>caf\u00e9</a>".encode("latin-1"),  # declared (default) UTF-8, is not
        b"<a/><b/>",
    ],
)
def test_malformed_xml(data: bytes) -> None:
    err = refused(data, "malformed XML")
    assert err.cwmp_id is None


# ---------------------------------------------------------------- DTDs and entities


def test_doctype_is_refused() -> None:
    refused(b"<!DOCTYPE Envelope>" + doc("<cwmp:GetRPCMethods/>"), "DOCTYPE")


def test_internal_entity_is_refused() -> None:
    data = b'<!DOCTYPE s:Envelope [<!ENTITY k "boom">]>' + doc(
        "<cwmp:Reboot><CommandKey>&k;</CommandKey></cwmp:Reboot>"
    )
    refused(data, "DOCTYPE")


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'
        for i in range(1, 10)
    )
    + "]>\n"
    + ENV_OPEN
    + "<s:Body><cwmp:Reboot><CommandKey>&lol9;</CommandKey>"
    "</cwmp:Reboot></s:Body></s:Envelope>"
)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-be"])
def test_billion_laughs_is_refused_fast(encoding: str) -> None:
    data = BILLION_LAUGHS.encode(encoding)
    if encoding == "utf-16-be":
        data = BILLION_LAUGHS.replace(
            'version="1.0"?>', 'version="1.0" encoding="UTF-16BE"?>', 1
        ).encode(encoding)
    start = time.perf_counter()
    # UTF-8: our byte check; UTF-16: libxml2's amplification limit, then our
    # DOCTYPE check if it ever got that far.  Either way: refused, quickly.
    err = refused(data, "DOCTYPE" if encoding == "utf-8" else "DOCTYPE|amplification")
    assert time.perf_counter() - start < 1.0
    assert "lollol" not in err.reason


@pytest.fixture
def secret_file(tmp_path: Path) -> tuple[Path, str]:
    secret = "TOP-SECRET-7f3a9c1e"
    path = tmp_path / "secret.txt"
    path.write_text(secret)
    return path, secret


def _xxe(path: Path) -> str:
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE s:Envelope [<!ENTITY xxe SYSTEM "{path.as_uri()}">]>\n'
        + ENV_OPEN
        + "<s:Body><cwmp:Reboot><CommandKey>&xxe;</CommandKey></cwmp:Reboot>"
        "</s:Body></s:Envelope>"
    )


def _assert_secret_absent(secret: str, err: BaseException) -> None:
    assert secret not in str(err)
    assert secret not in repr(err.args)
    if isinstance(err, CwmpParseError):
        assert secret not in err.reason
        assert secret not in str(err.cwmp_id)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_external_entity_never_reads_the_file(secret_file: tuple[Path, str], encoding: str) -> None:
    path, secret = secret_file
    data = _xxe(path).encode(encoding)
    err = refused(data, "DOCTYPE")
    _assert_secret_absent(secret, err)
    # defence in depth: the hardened parser alone does not read it either
    tree = etree.fromstring(data, soap._PARSER)
    assert secret not in etree.tostring(tree, encoding="unicode")
    assert all(secret not in (el.text or "") for el in tree.iter())


def test_external_dtd_and_parameter_entities_are_not_loaded(secret_file: tuple[Path, str]) -> None:
    path, secret = secret_file
    dtd = path.with_suffix(".dtd")
    dtd.write_text(f'<!ENTITY leak "{secret}">')
    for data in [
        (
            f'<!DOCTYPE s:Envelope SYSTEM "{dtd.as_uri()}">' + doc("<cwmp:GetRPCMethods/>").decode()
        ).encode("utf-16"),
        f'<!DOCTYPE s:Envelope SYSTEM "{dtd.as_uri()}">'.encode() + doc("<cwmp:GetRPCMethods/>"),
        (
            f'<!DOCTYPE s:Envelope [<!ENTITY % p SYSTEM "{dtd.as_uri()}"> %p;]>'.encode()
            + doc("<cwmp:Reboot><CommandKey>&leak;</CommandKey></cwmp:Reboot>")
        ),
    ]:
        _assert_secret_absent(secret, refused(data))


def test_utf16_document_with_doctype_is_refused() -> None:
    data = (
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x>'
        + doc("<cwmp:GetRPCMethods/>").decode()
    ).encode("utf-16")
    assert b"<!DOCTYPE" not in data  # the cheap byte check cannot see it
    refused(data, "DOCTYPE")


def test_utf16_document_without_doctype_parses() -> None:
    data = (
        '<?xml version="1.0" encoding="UTF-16"?>'
        + doc("<cwmp:Reboot><CommandKey>\u00fcber</CommandKey></cwmp:Reboot>").decode()
    ).encode("utf-16")
    env = parse_envelope(data)
    assert env is not None and env.body == m.Reboot("\u00fcber") and env.cwmp_id == "h-1"


def test_xinclude_is_not_processed(secret_file: tuple[Path, str]) -> None:
    path, secret = secret_file
    xi = (
        f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{path.as_uri()}"'
        ' parse="text"/>'
    )
    data = doc(
        "<cwmp:GetParameterValuesResponse><ParameterList><ParameterValueStruct>"
        f"<Name>Device.X{xi}</Name><Value>{xi}</Value>"
        f"</ParameterValueStruct>{xi}</ParameterList></cwmp:GetParameterValuesResponse>"
    )
    try:
        env = parse_envelope(data)
    except CwmpParseError as err:
        _assert_secret_absent(secret, err)
    else:
        assert env is not None
        assert secret not in repr(env)
        assert isinstance(env.body, m.GetParameterValuesResponse)
        assert all(secret not in p.value and secret not in p.name for p in env.body.parameter_list)


def test_processing_instructions_and_comments_are_dropped() -> None:
    data = doc(
        "<cwmp:Reboot><?php system('id') ?><!-- c --><CommandKey>a<!--x-->b</CommandKey>"
        "</cwmp:Reboot>"
    )
    env = parse_envelope(data)
    assert env is not None and env.body == m.Reboot("ab")


# ---------------------------------------------------------------- structure


def test_deep_nesting_is_refused() -> None:
    depth = soap.MAX_DEPTH + 5  # within libxml2's own limit: our check must catch it
    inner = "<x>" * depth + "</x>" * depth
    err = refused(doc(f"<cwmp:Reboot><CommandKey>k</CommandKey>{inner}</cwmp:Reboot>"))
    assert "nested deeper" in err.reason


def test_very_deep_nesting_is_refused_fast() -> None:
    depth = 100_000
    start = time.perf_counter()
    refused(doc("<a>" * depth + "</a>" * depth), "depth|nested deeper")
    assert time.perf_counter() - start < 2.0


def test_message_at_the_depth_limit_parses() -> None:
    # Envelope > Body > ChangeDUState ... real messages stay far below MAX_DEPTH
    env = parse_envelope(
        doc(
            "<cwmp:DUStateChangeComplete><Results><UUID>u</UUID><DeploymentUnitRef/><Version/>"
            "<CurrentState>Installed</CurrentState><Resolved>1</Resolved><ExecutionUnitRefList/>"
            "<StartTime/><CompleteTime/><Fault><FaultCode>0</FaultCode><FaultString/></Fault>"
            "</Results></cwmp:DUStateChangeComplete>"
        )
    )
    assert env is not None and isinstance(env.body, m.DUStateChangeComplete)
    assert env.body.results[0].resolved is True


@pytest.mark.parametrize(
    "data",
    [
        b"<html><body>hi</body></html>",
        b'<Envelope xmlns="urn:other"/>'.replace(b"Envelope", b"Envelop"),
        b"<soap:Body xmlns:soap='http://schemas.xmlsoap.org/soap/envelope/'/>",
    ],
)
def test_non_soap_root(data: bytes) -> None:
    refused(data, "not a SOAP envelope")


def test_no_body() -> None:
    err = refused(f"{ENV_OPEN}<s:Header>{ID}</s:Header></s:Envelope>".encode(), "without Body")
    assert err.cwmp_id == "h-1" and err.cwmp_ns == CWMP_NS_1_2


def test_two_cwmp_ids() -> None:
    refused(doc("<cwmp:GetRPCMethods/>", header=ID + ID.replace("h-1", "h-2")), "duplicate cwmp:ID")


def test_two_body_elements() -> None:
    err = refused(doc("<cwmp:GetRPCMethods/><cwmp:Reboot/>"), "one message per envelope")
    assert err.cwmp_id == "h-1"


def test_two_soap_bodies() -> None:
    # the second, empty Body must not turn a request into an "empty POST"
    data = doc("<cwmp:GetRPCMethods/>").replace(b"</s:Envelope>", b"<s:Body/></s:Envelope>")
    refused(data, "two Body")


def test_two_soap_headers() -> None:
    data = doc("<cwmp:GetRPCMethods/>").replace(
        b"<s:Body>", b"<s:Header><cwmp:ID s:mustUnderstand='1'>evil</cwmp:ID></s:Header><s:Body>"
    )
    refused(data, "two Header")


@pytest.mark.parametrize("text", ["\u00b2", "\u0663", "-1", "1e3", "", "99999999999999999999x"])
def test_bad_session_timeout_header_is_ignored(text: str) -> None:
    env = parse_envelope(
        doc("<cwmp:GetRPCMethods/>", header=f"<cwmp:SessionTimeout>{text}</cwmp:SessionTimeout>")
    )
    assert env is not None and env.session_timeout is None


@settings(max_examples=100, deadline=None)
@given(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="<&\x00"), max_size=12),
    st.sampled_from(
        [
            "ID",
            "HoldRequests",
            "NoMoreRequests",
            "SessionTimeout",
            "SupportedCWMPVersions",
            "UseCWMPVersion",
        ]
    ),
)
def test_random_header_values(text: str, header: str) -> None:
    _parse_or_refuse(doc("<cwmp:GetRPCMethods/>", header=f"<cwmp:{header}>{text}</cwmp:{header}>"))


def test_inform_without_device_id_names_it() -> None:
    err = refused(
        doc(
            "<cwmp:Inform><Event/><MaxEnvelopes>1</MaxEnvelopes><RetryCount>0</RetryCount>"
            "</cwmp:Inform>"
        ),
        "DeviceId",
    )
    assert err.reason.startswith("Inform:")
    assert err.cwmp_id == "h-1" and err.cwmp_ns == CWMP_NS_1_2


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (
            "<cwmp:Inform><DeviceId><OUI>1</OUI><SerialNumber>s</SerialNumber></DeviceId>"
            "<Event/></cwmp:Inform>",
            "Manufacturer",
        ),
        (
            "<cwmp:Inform><DeviceId><Manufacturer>m</Manufacturer><OUI>1</OUI>"
            "<SerialNumber>s</SerialNumber></DeviceId></cwmp:Inform>",
            "Event",
        ),
        ("<cwmp:GetParameterValues/>", "ParameterNames"),
        (
            "<cwmp:SetParameterValues><ParameterList><ParameterValueStruct><Value>1</Value>"
            "</ParameterValueStruct></ParameterList></cwmp:SetParameterValues>",
            "Name",
        ),
        (
            "<cwmp:GetParameterNames><ParameterPath>Device.</ParameterPath>"
            "</cwmp:GetParameterNames>",
            "NextLevel",
        ),
        ("<cwmp:Download><FileType>1 Firmware Upgrade Image</FileType></cwmp:Download>", "URL"),
        (
            "<cwmp:ChangeDUState><Operations xsi:type='cwmp:RebootOpStruct'><URL>u</URL>"
            "</Operations></cwmp:ChangeDUState>",
            "RebootOpStruct",
        ),
        ("<cwmp:DUStateChangeComplete><CommandKey/></cwmp:DUStateChangeComplete>", "Results"),
        (
            "<cwmp:AddObjectResponse><InstanceNumber>-</InstanceNumber><Status>0</Status>"
            "</cwmp:AddObjectResponse>",
            "InstanceNumber",
        ),
    ],
)
def test_missing_or_bad_required_fields_name_the_field(body: str, names: str) -> None:
    err = refused(doc(body), names)
    assert err.cwmp_id == "h-1"


# ---------------------------------------------------------------- fuzzing


def _parse_or_refuse(data: bytes) -> None:
    try:
        result = parse_envelope(data)
    except CwmpParseError as err:
        assert isinstance(err.reason, str) and err.reason
        assert err.fault_code == 8003
    else:
        assert result is None or isinstance(result, soap.Envelope)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
@example(b"\x00")
@example(b"\xef\xbb\xbf")
@example(b"<?xml version='1.0' encoding='utf-32'?><a/>")
def test_random_bytes(data: bytes) -> None:
    _parse_or_refuse(data)


@st.composite
def mutated_inform(draw: st.DrawFn) -> bytes:
    data = bytearray(TR181_INFORM_1_4)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "dup"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] = draw(st.integers(0, 255))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 20))]
        elif op == "insert":
            data[i:i] = draw(
                st.sampled_from(
                    [
                        b"<",
                        b">",
                        b"&",
                        b"&amp;",
                        b"<x>",
                        b"</Value>",
                        b"<!--",
                        b"]]>",
                        b"\x00",
                        b"<Name>",
                        b"<!DOCTYPE a>",
                        b"\xc3",
                        b"xsi:type='q:r'",
                        b"<Value/>",
                    ]
                )
            )
        elif op == "truncate":
            del data[i:]
        else:
            j = draw(st.integers(i, min(len(data), i + 200)))
            data[j:j] = data[i:j]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_inform())
def test_mutated_inform(data: bytes) -> None:
    _parse_or_refuse(data)
