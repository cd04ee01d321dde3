"""Region mirrors: what a mirror may be (issue 18 item 5)."""

from __future__ import annotations

import pytest

from acs.core.mirrors import Mirror, MirrorError, parse_mirrors, url_of, url_problem


def test_mirrors_are_kept_in_order_with_a_trailing_slash() -> None:
    mirrors = parse_mirrors(
        [
            {"baseUrl": "https://eu.example.net/fw", "tag": "region-eu"},
            {"baseUrl": "http://10.0.0.1:8080/", "filter": 'ProvisioningCode = "AP"'},
        ]
    )
    assert mirrors == [
        Mirror("https://eu.example.net/fw/", tag="region-eu"),
        Mirror("http://10.0.0.1:8080/", filter='ProvisioningCode = "AP"'),
    ]
    assert url_of(mirrors[0].base_url, "fw 2.bin") == "https://eu.example.net/fw/fw%202.bin"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://eu.example.net/", "http"),
        ("https:///fw/", "no host"),
        ("https://user:pw@eu.example.net/", "credentials"),
        ("https://eu.example.net/?a=1", "query"),
        ("https://eu.example.net:99999/", "not a URL"),
        ("https://eu.example.net/a b", "spaces"),
    ],
)
def test_a_base_url_that_cannot_serve_a_cpe_is_refused(url: str, why: str) -> None:
    problem = url_problem(url)
    assert problem is not None and why in problem


def test_errors_name_the_mirror_and_the_filter_position() -> None:
    good = {"baseUrl": "https://eu.example.net/", "tag": "eu"}
    with pytest.raises(MirrorError) as err:
        parse_mirrors([good, {"baseUrl": "https://x.example/", "filter": 'tag = "a" AND'}])
    assert err.value.path == "mirrors[1].filter"
    assert "does not compile at position 13" in err.value.message
    with pytest.raises(MirrorError) as err:
        parse_mirrors([good, {"baseUrl": "https://x.example/"}])
    assert err.value.path == "mirrors[1]" and "exactly one of tag or filter" in err.value.message
    with pytest.raises(MirrorError) as err:
        parse_mirrors([{"baseUrl": "https://x.example/", "tag": "no spaces"}])
    assert err.value.path == "mirrors[0].tag"
    with pytest.raises(MirrorError) as err:
        parse_mirrors([good] * 51)
    assert err.value.path == "mirrors"
