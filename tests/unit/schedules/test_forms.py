"""Schedule records from JSON and from command-line text, and back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from orchestrator.exceptions import PayloadConversionError
from orchestrator.schedules.forms import (
    from_json,
    parse_duration_s,
    parse_overlap,
    parse_time,
    to_json,
)
from orchestrator.schedules.spec import OverlapPolicy, SchedulePolicy, ScheduleSpec


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("1.5m", 90), ("2h", 7200), ("1d", 86400)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "-3s", "1w"])
def test_bad_durations_say_how(text: str) -> None:
    with pytest.raises(ValueError, match="use a number with s, m, h or d"):
        parse_duration_s(text)


def test_times_need_an_offset() -> None:
    assert parse_time("2026-03-08T06:30:00Z") == datetime(2026, 3, 8, 6, 30, tzinfo=UTC)
    assert parse_time("2026-03-08T01:30:00-05:00").utcoffset() == timedelta(hours=-5)
    with pytest.raises(ValueError, match="offset or Z"):
        parse_time("2026-03-08T06:30:00")


def test_overlap_names() -> None:
    assert parse_overlap("buffer-all") is OverlapPolicy.BUFFER_ALL
    assert parse_overlap("SKIP") is OverlapPolicy.SKIP
    assert parse_overlap(None) is None
    with pytest.raises(ValueError, match="expected one of skip, buffer_one"):
        parse_overlap("sometimes")


def test_records_round_trip_through_json() -> None:
    spec = ScheduleSpec(cron=["0 6 * * 1-5"], time_zone="Europe/Paris", jitter_s=30,
                        start_at=datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=1))))
    assert from_json(to_json(spec), ScheduleSpec) == spec
    assert to_json(SchedulePolicy()) == {"overlap": "skip", "catchup_window_s": 300.0}
    assert from_json({"overlap": "allow_all"}, SchedulePolicy).overlap is OverlapPolicy.ALLOW_ALL
    with pytest.raises(PayloadConversionError, match="interval_s"):
        from_json({"interval_s": "often"}, ScheduleSpec)
