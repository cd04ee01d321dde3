"""The column path of the codec (soap.ColumnArray): a discovery's big
ParameterValueStruct / ParameterInfoStruct arrays read with compiled XPath.
It must give exactly what the general decoder gives, and hand every shape it
cannot prove plain to the general decoder (whose result or error stands)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from acs.cwmp import messages as m
from acs.cwmp import soap
from acs.cwmp.soap import CwmpParseError, parse_envelope
from tests.unit.test_codec_hostile import doc


def gpv(structs: str) -> bytes:
    return doc(
        "<cwmp:GetParameterValuesResponse><ParameterList>"
        f"{structs}</ParameterList></cwmp:GetParameterValuesResponse>"
    )


def gpn(structs: str) -> bytes:
    return doc(
        "<cwmp:GetParameterNamesResponse><ParameterList>"
        f"{structs}</ParameterList></cwmp:GetParameterNamesResponse>"
    )


def pv(name: str, value: str, attr: str = ' xsi:type="xsd:string"') -> str:
    return (
        f"<ParameterValueStruct><Name>{name}</Name>"
        f"<Value{attr}>{value}</Value></ParameterValueStruct>"
    )


def general(data: bytes) -> list[object]:
    """The parameter list as the general decoder reads it."""
    root = etree.fromstring(data, soap._PARSER)
    plist = next(el for el in root.iter() if soap._local(el.tag) == "ParameterList")
    array = soap.PVS_ARRAY if b"GetParameterValues" in data else soap.PI_ARRAY
    return soap.Array.decode(array, plist)


def plain(data: bytes) -> bool:
    root = etree.fromstring(data, soap._PARSER)
    plist = next(el for el in root.iter() if soap._local(el.tag) == "ParameterList")
    array = soap.PVS_ARRAY if b"GetParameterValues" in data else soap.PI_ARRAY
    return bool(array._plain(plist))


def test_a_plain_answer_takes_the_column_path_and_reads_as_the_general_decoder() -> None:
    data = gpv(
        pv("Device.A", "1", ' xsi:type="xsd:unsignedInt"')
        + pv("Device.B", "")  # a password read back empty
        + pv("Device.C", "a &amp; b")
        + pv("Device.D", "x", ' xsi:type="cwmp:special"')
        + pv("Device.E", "y", ' xsi:type=""')
    )
    assert plain(data)
    env = parse_envelope(data)
    assert env is not None
    assert isinstance(env.body, m.GetParameterValuesResponse)
    assert env.body.parameter_list == [
        m.ParameterValueStruct("Device.A", "1", "xsd:unsignedInt"),
        m.ParameterValueStruct("Device.B", "", "xsd:string"),
        m.ParameterValueStruct("Device.C", "a & b", "xsd:string"),
        m.ParameterValueStruct("Device.D", "x", "xsd:special"),
        m.ParameterValueStruct("Device.E", "y", "xsd:string"),
    ]
    assert env.body.parameter_list == general(data)


@pytest.mark.parametrize(
    "structs",
    [
        # two Names in one struct, two Values in the next: the counts alone match
        "<ParameterValueStruct><Name>A</Name><Name>B</Name></ParameterValueStruct>"
        '<ParameterValueStruct><Value xsi:type="xsd:string">1</Value>'
        '<Value xsi:type="xsd:string">2</Value></ParameterValueStruct>',
        # an empty Name (no text node) next to one with two text nodes
        pv("", "1") + pv("A<!-- split -->B", "2"),
        # fields with a namespace prefix
        '<ParameterValueStruct><cwmp:Name>A</cwmp:Name><cwmp:Value xsi:type="xsd:int">1'
        "</cwmp:Value></ParameterValueStruct>",
        # a vendor's extra field
        '<ParameterValueStruct><Name>A</Name><Value xsi:type="xsd:int">1</Value><X/>'
        "</ParameterValueStruct>",
        # markup inside a value
        pv("A", "1<b>2</b>3"),
        # Value before Name, and an untyped value next to a typed one
        '<ParameterValueStruct><Value xsi:type="xsd:int">1</Value><Name>A</Name>'
        "</ParameterValueStruct>" + pv("B", "2", ""),
        # the 1999 draft's xsi namespace
        '<ParameterValueStruct><Name>A</Name><Value xmlns:x9="http://www.w3.org/1999/'
        'XMLSchema-instance" x9:type="xsd:int">1</Value></ParameterValueStruct>',
    ],
)
def test_an_unusual_shape_reads_as_the_general_decoder(structs: str) -> None:
    data = gpv(structs)
    try:
        expected = general(data)
    except ValueError:
        with pytest.raises(CwmpParseError):
            parse_envelope(data)
        return
    env = parse_envelope(data)
    assert env is not None
    assert isinstance(env.body, m.GetParameterValuesResponse)
    assert env.body.parameter_list == expected


def test_a_struct_without_name_is_still_refused() -> None:
    data = gpv(pv("A", "1") + '<ParameterValueStruct><Value xsi:type="xsd:int">1</Value>'
               "<Value>2</Value></ParameterValueStruct>")  # fmt: skip
    assert not plain(data)
    with pytest.raises(CwmpParseError, match="without Name"):
        parse_envelope(data)


def test_parameter_names_take_the_column_path() -> None:
    data = gpn(
        "<ParameterInfoStruct><Name>Device.</Name><Writable>0</Writable></ParameterInfoStruct>"
        "<ParameterInfoStruct><Name>Device.A</Name><Writable>true</Writable></ParameterInfoStruct>"
    )
    assert plain(data)
    env = parse_envelope(data)
    assert env is not None
    assert isinstance(env.body, m.GetParameterNamesResponse)
    assert env.body.parameter_list == [
        m.ParameterInfoStruct("Device.", False),
        m.ParameterInfoStruct("Device.A", True),
    ]


@pytest.mark.parametrize("writable", [" 1 ", "TRUE", "yes", ""])
def test_an_unusual_writable_reads_as_the_general_decoder(writable: str) -> None:
    data = gpn(
        f"<ParameterInfoStruct><Name>Device.A</Name><Writable>{writable}</Writable>"
        "</ParameterInfoStruct>"
    )
    try:
        expected = general(data)
    except ValueError:
        with pytest.raises(CwmpParseError):
            parse_envelope(data)
        return
    env = parse_envelope(data)
    assert env is not None
    assert isinstance(env.body, m.GetParameterNamesResponse)
    assert env.body.parameter_list == expected


_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from("<>&\n\t")
)
_PIECES = st.sampled_from(
    ["<Name>{}</Name>", '<Value xsi:type="xsd:string">{}</Value>', "<Value>{}</Value>",
     "<Name/>", "<Value/>", "<cwmp:Name>{}</cwmp:Name>", "<Other>{}</Other>"]
)  # fmt: skip


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.tuples(_PIECES, _TEXT), max_size=4), max_size=6))
def test_any_mix_of_fields_reads_as_the_general_decoder(
    structs: list[list[tuple[str, str]]],
) -> None:
    body = "".join(
        "<ParameterValueStruct>"
        + "".join(piece.format(_escaped(text)) for piece, text in fields)
        + "</ParameterValueStruct>"
        for fields in structs
    )
    data = gpv(body)
    try:
        expected = general(data)
    except ValueError:
        with pytest.raises(CwmpParseError):
            parse_envelope(data)
        return
    env = parse_envelope(data)
    assert env is not None
    assert isinstance(env.body, m.GetParameterValuesResponse)
    assert env.body.parameter_list == expected


def test_a_few_values_are_walked_and_read_as_the_columns_and_the_general_decoder() -> None:
    """Up to SMALL_ARRAY structs (an Inform's) are walked in Python instead of the
    XPaths; the walk takes the plain shape only, and the tests above (at most six
    structs) hold it to the general decoder's reading for every other shape."""
    structs = "".join(pv(f"Device.P{i}", f"v{i}") for i in range(soap.SMALL_ARRAY))
    root = etree.fromstring(gpv(structs), soap._PARSER)
    plist = next(el for el in root.iter() if soap._local(el.tag) == "ParameterList")
    walked = soap._few_parameter_values(plist)
    assert walked is not None and len(walked) == soap.SMALL_ARRAY
    assert walked == soap._parameter_values(plist) == general(gpv(structs))
    # a shape the columns would refuse is refused by the walk as well
    odd = etree.fromstring(gpv(pv("A", "1", "")), soap._PARSER)
    odd_list = next(el for el in odd.iter() if soap._local(el.tag) == "ParameterList")
    assert soap._few_parameter_values(odd_list) is None
