"""The lean path's Cookie header: its one-cookie shortcut reads as aiohttp's parser."""

from __future__ import annotations

import random
import string

import pytest
from aiohttp._cookie_helpers import parse_cookie_header
from multidict import CIMultiDict, CIMultiDictProxy

from acs.web.lean import LeanRequest


def _cookies(header: str) -> dict[str, str]:
    headers = CIMultiDictProxy(CIMultiDict({"Cookie": header}))
    return LeanRequest("POST", "/cwmp", headers, b"", None, None, "http").cookies  # type: ignore[arg-type]


def _aiohttp(header: str) -> dict[str, str]:
    return {name: morsel.value for name, morsel in parse_cookie_header(header)}


@pytest.mark.parametrize(
    "header",
    [
        "acs_session=a1.B2~c3|d4-e5_f6",
        "acs_session=",
        "a=b=c",
        "a=b; acs_session=x",  # two: aiohttp's parser
        'acs_session="quoted"',
        " acs_session=x",
        "acs_session=x ",
        "=x",
        "a=%20",
        "",
    ],
)
def test_known_headers_read_as_aiohttp_reads_them(header: str) -> None:
    assert _cookies(header) == _aiohttp(header)


def test_random_headers_read_as_aiohttp_reads_them() -> None:
    rng = random.Random(19)
    alphabet = string.printable + "é"
    for _ in range(5000):
        header = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert _cookies(header) == _aiohttp(header), header
