"""Region mirrors of a firmware image (pure: no I/O).

An image may be served from a mirror or CDN per region: each mirror is a base
URL for the devices carrying a region tag, or matching a filter of the filter
language. The first mirror in the list that fits a device gives its URL (the
base URL followed by the image's file name); none fits: the ACS's own file
server. Mirrors get no credentials: the ACS's file-server password is for
the ACS's file server only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from acs.core.filters import FilterError, parse_filter
from acs.core.tags import tag_problem

MAX_MIRRORS = 50
MAX_URL = 2000


@dataclass(frozen=True, slots=True)
class Mirror:
    base_url: str  # ends with "/"
    tag: str | None = None
    filter: str | None = None

    def describe(self) -> str:
        return f"tag {self.tag!r}" if self.tag is not None else f"filter {self.filter!r}"


class MirrorError(ValueError):
    """A mirror refused, with the JSON path of the field at fault."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a mirror's base URL, or None."""
    if len(url) > MAX_URL:
        return f"longer than {MAX_URL} characters"
    if any(ord(c) <= 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in url):
        return "a URL has no spaces, control characters or unpaired surrogates"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError as err:
        return f"not a URL: {err}"
    if parts.scheme.lower() not in ("http", "https"):
        return f"must be http:// or https:// (a CPE downloads over HTTP), not {parts.scheme!r}"
    if not parts.hostname:
        return "has no host"
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials: they would be shown to every reader of the catalog"
    if parts.query or parts.fragment:
        return "a base URL has no query or fragment: the file name is appended to it"
    del port
    return None


def parse_mirrors(items: Sequence[dict[str, Any]]) -> list[Mirror]:
    """Validated mirrors from the API's body, in order; MirrorError names the
    position (``mirrors[2].filter``) and, for a filter, the character."""
    if len(items) > MAX_MIRRORS:
        raise MirrorError("mirrors", f"at most {MAX_MIRRORS} mirrors per image")
    result: list[Mirror] = []
    for i, item in enumerate(items):
        at = f"mirrors[{i}]"
        url = item.get("baseUrl")
        tag, flt = item.get("tag"), item.get("filter")
        if not isinstance(url, str):
            raise MirrorError(f"{at}.baseUrl", "a base URL is required")
        problem = url_problem(url)
        if problem is not None:
            raise MirrorError(f"{at}.baseUrl", problem)
        if (tag is None) == (flt is None):
            raise MirrorError(at, "give exactly one of tag or filter: the devices it serves")
        if tag is not None:
            problem = tag_problem(tag)
            if problem is not None:
                raise MirrorError(f"{at}.tag", problem)
        else:
            if not isinstance(flt, str) or not flt.strip():
                raise MirrorError(f"{at}.filter", "a filter must not be empty")
            if "\x00" in flt:
                raise MirrorError(f"{at}.filter", "NUL characters are not allowed")
            try:
                parse_filter(flt)
            except FilterError as err:
                raise MirrorError(
                    f"{at}.filter", f"does not compile at position {err.position}: {err.message}"
                ) from None
        base = url if url.endswith("/") else url + "/"
        result.append(Mirror(base, tag, flt))
    return result


def url_of(base_url: str, file_name: str) -> str:
    """The URL of an image's file under a base URL (the file server's or a mirror's)."""
    return base_url + quote(file_name)
