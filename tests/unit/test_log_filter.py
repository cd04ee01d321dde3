"""APScheduler's per-tick chatter stays out of an INFO log; its real warnings do not."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from acs import logs


def _record(level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord("apscheduler.scheduler", level, __file__, 1, msg, (), None)


@pytest.fixture
def info_root() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    saved = root.level
    root.setLevel(logging.INFO)
    yield root
    root.setLevel(saved)


def test_a_tick_that_overlapped_its_next_run_is_debug(info_root: logging.Logger) -> None:
    f = logs._DemoteToDebug()
    overlap = _record(
        logging.WARNING,
        'Execution of job "%s" skipped: maximum number of running instances reached (%d)',
    )
    assert f.filter(overlap) is False and overlap.levelno == logging.DEBUG
    ran = _record(logging.INFO, 'Running job "%s" (scheduled at %s)')
    assert f.filter(ran) is False and ran.levelno == logging.DEBUG


def test_other_scheduler_warnings_and_errors_pass(info_root: logging.Logger) -> None:
    f = logs._DemoteToDebug()
    missed = _record(logging.WARNING, 'Run time of job "%s" was missed by %s')
    failed = _record(logging.ERROR, 'Job "%s" raised an exception')
    assert f.filter(missed) is True and missed.levelno == logging.WARNING
    assert f.filter(failed) is True and failed.levelno == logging.ERROR
    info_root.setLevel(logging.DEBUG)  # with DEBUG on, the demoted lines are shown
    assert f.filter(_record(logging.INFO, 'Running job "%s"')) is True
