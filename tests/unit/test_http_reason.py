"""The reason logged for malformed HTTP names the problem, never the client's bytes."""

from __future__ import annotations

import pytest
from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    BadStatusLine,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
)

from acs.web.guard import reason_of


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (BadStatusLine("GET /secret"), "BadStatusLine: Bad status line"),
        (BadHttpMethod("SECRET"), "BadHttpMethod: Bad HTTP method in status line"),
        (InvalidHeader(b"X-Secret: 1"), "InvalidHeader: Invalid HTTP header"),
        (LineTooLong(b"secret" * 100, 8190), "LineTooLong: Got more than 8190 bytes when reading"),
        # the C parser's shape: a reason line, then an excerpt of the request
        (
            BadHttpMessage("Invalid header token:\n\n  b'secret'\n   ^"),
            "BadHttpMessage: Invalid header token",
        ),
        (ConnectionResetError(), "ConnectionResetError"),
        # found by test_mutated_http_framing: the message is the raw request target
        (InvalidURLError("/secret?password=x"), "InvalidURLError: the request target is not a URL"),
    ],
)
def test_reason_of(exc: Exception, reason: str) -> None:
    assert reason_of(exc) == reason
    assert "secret" not in reason_of(exc).lower()


def test_an_apostrophe_is_not_an_excerpt() -> None:
    exc = BadHttpMessage("Content-Length can't be present with Transfer-Encoding")
    assert reason_of(exc) == (
        "BadHttpMessage: Content-Length can't be present with Transfer-Encoding"
    )
