"""acs/cwmp/bounds.py on its own: what the XML parser cannot produce (NUL, lone
surrogates) is refused all the same, since an Inform may be built elsewhere."""

from __future__ import annotations

import pytest

from acs.cwmp import messages as m
from acs.cwmp.bounds import InformOutOfBounds, check_inform


def inform(**ident: str) -> m.Inform:
    fields = {
        "manufacturer": "Acme",
        "oui": "ACDE48",
        "product_class": "HGW",
        "serial_number": "S1",
    }
    fields.update(ident)
    return m.Inform(
        device_id=m.DeviceIdStruct(**fields),
        events=[m.EventStruct("1 BOOT")],
        max_envelopes=1,
        current_time=None,
        retry_count=0,
        parameter_list=[m.ParameterValueStruct("Device.DeviceInfo.SoftwareVersion", "1.0")],
    )


def test_a_well_formed_inform_passes() -> None:
    check_inform(inform(serial_number="Ж" * 64, product_class="𝟘" * 64, oui="acde48"))


@pytest.mark.parametrize(
    ("ident", "field"),
    [
        ({"serial_number": "S\x00"}, "DeviceId.SerialNumber"),
        ({"serial_number": "S\ud800"}, "DeviceId.SerialNumber"),
        ({"product_class": "\udfff"}, "DeviceId.ProductClass"),
        ({"manufacturer": "\x0b"}, "DeviceId.Manufacturer"),
        ({"serial_number": ""}, "DeviceId.SerialNumber"),
        ({"oui": "ACDE4"}, "DeviceId.OUI"),
    ],
)
def test_characters_postgresql_or_xml_cannot_hold_are_refused(ident: dict, field: str) -> None:
    with pytest.raises(InformOutOfBounds) as refused:
        check_inform(inform(**ident))
    assert refused.value.field == field


def test_a_parameter_value_with_nul_is_refused() -> None:
    bad = inform()
    bad.parameter_list.append(m.ParameterValueStruct("Device.X", "a\x00b"))
    with pytest.raises(InformOutOfBounds, match=r"ParameterList\[1\] \(Device.X\).Value"):
        check_inform(bad)


def test_an_empty_event_list_is_within_bounds() -> None:
    empty = inform()
    empty.events = []
    check_inform(empty)


def test_the_one_pass_check_refuses_exactly_what_the_field_checks_refuse() -> None:
    """check_inform looks field by field only when the one-pass check says no; the two
    must agree on every Inform, or a bad one would pass (or a good one be refused)."""
    import random

    from acs.cwmp.bounds import _check_each, _within_bounds

    rng = random.Random(19)
    pieces = ["a", "Ж", "𝟘", " ", "\t", "\x00", "\x0b", "\ud800", "\ufffe", "x" * 40]

    def text(most: int) -> str:
        return "".join(rng.choice(pieces) for _ in range(rng.randrange(most)))

    for _ in range(3000):
        message = m.Inform(
            device_id=m.DeviceIdStruct(
                manufacturer=text(4),
                oui=rng.choice(["ACDE48", "acde4", "ACDE4G"]),
                product_class=text(4),
                serial_number=text(4),
            ),
            events=[m.EventStruct(text(3), text(2)) for _ in range(rng.randrange(3))],
            max_envelopes=1,
            current_time=None,
            retry_count=0,
            parameter_list=[
                m.ParameterValueStruct(
                    rng.choice(["Device.DeviceInfo.SoftwareVersion", text(9)]), text(4), text(3)
                )
                for _ in range(rng.randrange(4))
            ],
        )
        try:
            _check_each(message)
            refused = False
        except InformOutOfBounds:
            refused = True
        assert _within_bounds(message) is not refused, message
