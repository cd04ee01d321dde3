"""ACS_EVENT_LOOP: uvloop by default, asyncio's own loop on request, and a server
that starts either way (uvloop missing is a warning, not a crash)."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest
from pydantic import ValidationError

from acs import loops
from acs.config import Settings


async def _which() -> str:
    await asyncio.sleep(0)
    return loops.running_name()


def test_default_is_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACS_EVENT_LOOP", raising=False)
    assert Settings().event_loop == "uvloop"
    assert loops.run(_which(), "uvloop") == "uvloop"


def test_asyncio_stays_a_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACS_EVENT_LOOP", "asyncio")
    choice = Settings().event_loop
    assert choice == "asyncio"
    assert loops.loop_factory(choice) is None
    assert loops.run(_which(), choice) == "asyncio"


def test_an_unknown_loop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACS_EVENT_LOOP", "trio")
    with pytest.raises(ValidationError, match="event_loop"):
        Settings()


def test_uvloop_missing_falls_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a)
    )
    with caplog.at_level("WARNING", logger="acs"):
        assert loops.loop_factory("uvloop") is None
        assert loops.run(_which(), "uvloop") == "asyncio"
    assert "event_loop_fallback" in caplog.text
