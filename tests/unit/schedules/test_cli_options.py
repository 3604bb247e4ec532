"""``saga schedule create|update`` options become the records they name; an update
keeps what its options do not give."""

from __future__ import annotations

from datetime import UTC, datetime

import click
import pytest

from orchestrator.schedules.cli import _args, _policy, _spec
from orchestrator.schedules.spec import OverlapPolicy, SchedulePolicy, ScheduleSpec


def test_every_when_option_reaches_the_spec() -> None:
    spec = _spec(None, {
        "crons": ("0 6 * * 1-5", "30 12 * * *"), "every": "15m", "offset": "30s",
        "time_zone": "Europe/Paris", "jitter": "45s", "start_at": "2026-01-01T00:00:00Z",
        "end_at": "2027-01-01T00:00:00+01:00",
    })
    assert spec is not None
    assert spec.cron == ["0 6 * * 1-5", "30 12 * * *"]
    assert (spec.interval_s, spec.offset_s, spec.jitter_s) == (900, 30, 45.0)
    assert spec.time_zone == "Europe/Paris"
    assert spec.start_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert spec.end_at is not None and spec.end_at.utcoffset() is not None
    assert spec.problems() == []


def test_an_update_keeps_what_it_does_not_give() -> None:
    current = ScheduleSpec(cron=["0 6 * * *"], time_zone="Asia/Tokyo", jitter_s=5)
    assert _spec(current, {"crons": ()}) is None  # no when-option: the spec stays
    changed = _spec(current, {"every": "1h"})
    assert changed == ScheduleSpec(cron=["0 6 * * *"], interval_s=3600, time_zone="Asia/Tokyo",
                                   jitter_s=5)
    policy = SchedulePolicy(OverlapPolicy.BUFFER_ALL, catchup_window_s=60)
    assert _policy(policy, {}) is None
    longer = _policy(policy, {"catchup_window": "2m"})
    assert longer == SchedulePolicy(OverlapPolicy.BUFFER_ALL, 120)
    assert _policy(None, {"overlap": "allow_all"}) == SchedulePolicy(OverlapPolicy.ALLOW_ALL)


def test_input_and_args() -> None:
    assert _args('{"a": 1}', None) == [{"a": 1}]
    assert _args(None, "[1, 2]") == [1, 2]
    assert _args(None, None) == []
    with pytest.raises(click.BadParameter, match="JSON list"):
        _args(None, '{"a": 1}')
    with pytest.raises(click.BadParameter, match="not JSON"):
        _args("{", None)
