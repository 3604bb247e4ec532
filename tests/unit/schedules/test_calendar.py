"""Nominal times: cron on a time zone's wall clock (with both daylight-saving jumps),
intervals on UTC, bounds, jitter and the firing id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.schedules.calendar import (
    cron_problem,
    firing_workflow_id,
    jitter_ms,
    next_after,
    times_between,
    to_ms,
    utc,
)
from orchestrator.schedules.spec import ScheduleSpec, check_schedule_id

NEW_YORK = "America/New_York"


def at(*parts: int) -> int:
    return to_ms(datetime(*parts, tzinfo=UTC))  # type: ignore[misc]


def following(spec: ScheduleSpec, after: int, count: int) -> list[datetime]:
    found: list[datetime] = []
    for _ in range(count):
        nxt = next_after(spec, after)
        assert nxt is not None
        found.append(utc(nxt))
        after = nxt
    return found


def test_daily_cron_follows_the_wall_clock_of_its_time_zone() -> None:
    spec = ScheduleSpec(cron=["0 9 * * *"], time_zone="Europe/Paris")
    # winter: UTC+1, summer (from 29 March 2026): UTC+2
    assert following(spec, at(2026, 3, 27, 12), 3) == [
        datetime(2026, 3, 28, 8, tzinfo=UTC),
        datetime(2026, 3, 29, 7, tzinfo=UTC),
        datetime(2026, 3, 30, 7, tzinfo=UTC),
    ]


def test_a_0230_firing_on_the_spring_forward_day_fires_at_0330_local() -> None:
    # New York, 8 March 2026: 02:00 EST jumps to 03:00 EDT; 02:30 does not exist
    spec = ScheduleSpec(cron=["30 2 * * *"], time_zone=NEW_YORK)
    assert following(spec, at(2026, 3, 7, 12), 3) == [
        datetime(2026, 3, 8, 7, 30, tzinfo=UTC),  # 03:30 EDT: when 02:30 EST would have been
        datetime(2026, 3, 9, 6, 30, tzinfo=UTC),  # 02:30 EDT again
        datetime(2026, 3, 10, 6, 30, tzinfo=UTC),
    ]


def test_a_repeated_wall_time_on_the_fall_back_day_fires_once() -> None:
    # New York, 1 November 2026: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice
    spec = ScheduleSpec(cron=["30 1 * * *"], time_zone=NEW_YORK)
    assert following(spec, at(2026, 10, 31, 12), 2) == [
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # the first 01:30 (EDT) only
        datetime(2026, 11, 2, 6, 30, tzinfo=UTC),
    ]


def test_every_half_hour_across_both_jumps_fires_each_instant_once() -> None:
    spec = ScheduleSpec(cron=["*/30 * * * *"], time_zone=NEW_YORK)
    spring = [utc(t) for t in times_between(spec, at(2026, 3, 8, 5), at(2026, 3, 8, 9))]
    # the skipped wall hour (02:00-02:59) lands on the same instants as 03:00-03:59
    assert spring == [datetime(2026, 3, 8, 5, tzinfo=UTC) + timedelta(minutes=30 * k)
                      for k in range(8)]
    autumn = [utc(t) for t in times_between(spec, at(2026, 11, 1, 4), at(2026, 11, 1, 8))]
    # the repeated wall hour (01:00-01:59 EST, 06:00-06:59 UTC) does not fire again
    assert autumn == [datetime(2026, 11, 1, 4, tzinfo=UTC) + timedelta(minutes=30 * k)
                      for k in (0, 1, 2, 3, 6, 7)]


def test_interval_runs_on_utc_from_the_epoch_plus_offset() -> None:
    spec = ScheduleSpec(interval_s=3600, offset_s=900, time_zone=NEW_YORK)
    assert following(spec, at(2026, 3, 8, 6, 20), 3) == [
        datetime(2026, 3, 8, 7, 15, tzinfo=UTC),  # the DST jump changes nothing
        datetime(2026, 3, 8, 8, 15, tzinfo=UTC),
        datetime(2026, 3, 8, 9, 15, tzinfo=UTC),
    ]
    assert next_after(spec, at(2026, 3, 8, 7, 15)) == at(2026, 3, 8, 8, 15)  # strictly after


def test_cron_and_interval_together_are_their_union() -> None:
    spec = ScheduleSpec(cron=["10 * * * *"], interval_s=1800)
    assert following(spec, at(2026, 1, 1), 4) == [
        datetime(2026, 1, 1, 0, 10, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 30, tzinfo=UTC),
        datetime(2026, 1, 1, 1, 0, tzinfo=UTC),
        datetime(2026, 1, 1, 1, 10, tzinfo=UTC),
    ]


def test_start_and_end_bound_the_nominal_times_inclusively() -> None:
    spec = ScheduleSpec(interval_s=60, start_at=datetime(2026, 1, 1, 0, 5, tzinfo=UTC),
                        end_at=datetime(2026, 1, 1, 0, 7, tzinfo=UTC))
    assert [utc(t).minute for t in times_between(spec, at(2026, 1, 1), at(2026, 1, 2))] == [5, 6, 7]
    assert next_after(spec, at(2026, 1, 1, 0, 7)) is None


def test_times_between_includes_the_start_and_excludes_the_end() -> None:
    spec = ScheduleSpec(cron=["*/15 * * * *"])
    found = list(times_between(spec, at(2026, 1, 1, 10), at(2026, 1, 1, 11)))
    assert [utc(t).minute for t in found] == [0, 15, 30, 45]


def test_jitter_is_stable_bounded_and_spread() -> None:
    values = [jitter_ms("s", at(2026, 1, 1) + k * 1000, 10.0) for k in range(2000)]
    assert values == [jitter_ms("s", at(2026, 1, 1) + k * 1000, 10.0) for k in range(2000)]
    assert all(0 <= v < 10_000 for v in values)
    assert min(values) < 1000 and max(values) > 9000  # spread over the whole range
    assert jitter_ms("other", at(2026, 1, 1), 10.0) != jitter_ms("s", at(2026, 1, 1), 10.0)
    assert jitter_ms("s", at(2026, 1, 1), 0.0) == 0


def test_firing_id_is_the_schedule_id_and_the_nominal_second_in_utc() -> None:
    nominal = at(2026, 12, 3, 2, 0, 0)
    assert firing_workflow_id("nightly", nominal) == "nightly-20261203T020000Z"
    triggered = firing_workflow_id("nightly", nominal, trigger=True)
    assert triggered == "nightly-20261203T020000Z-trigger"


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("*/5 * * * *", None),
        ("0 9 * * 1-5", None),
        ("* * * *", "expected 5 fields"),
        ("*/5 * * * * *", "expected 5 fields"),
        ("61 * * * *", "not a valid cron expression"),
        ("0 0 29 2 *", None),  # every leap year
        ("0 0 30 2 *", "matches no date"),
        ("0 0 31 4 *", "matches no date"),
    ],
)
def test_cron_expressions_are_checked(expr: str, problem: str | None) -> None:
    found = cron_problem(expr)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_a_cron_that_never_matches_has_no_next_time_and_leaves_the_others() -> None:
    # a spec stored before such a cron was refused: no error, just no time from it
    never = ScheduleSpec(cron=["0 0 30 2 *"])
    assert next_after(never, at(2026, 1, 1)) is None
    assert list(times_between(never, at(2026, 1, 1), at(2027, 1, 1))) == []
    both = ScheduleSpec(cron=["0 0 30 2 *", "0 12 * * *"])
    assert following(both, at(2026, 1, 1), 2) == [utc(at(2026, 1, 1, 12)),
                                                  utc(at(2026, 1, 2, 12))]
    assert ScheduleSpec(cron=["0 0 30 2 *"]).problems() == [
        "cron '0 0 30 2 *': matches no date (e.g. a day the month never has)"
    ]


def test_spec_problems_list_everything_wrong() -> None:
    bad = ScheduleSpec(cron=["nope"], interval_s=0, time_zone="Mars/Olympus", jitter_s=-1,
                       start_at=datetime(2026, 1, 1))  # naive on purpose
    problems = " | ".join(bad.problems())
    for part in ("expected 5 fields", "interval_s", "unknown time zone", "jitter_s", "start_at"):
        assert part in problems
    assert ScheduleSpec().problems() == ["give at least one cron expression or an interval"]
    assert ScheduleSpec(interval_s=10, offset_s=3).problems() == []


def test_schedule_ids_are_checked() -> None:
    assert check_schedule_id("nightly.report-1") == "nightly.report-1"
    for bad in ("", "-x", "a b", "a/b", "x" * 201):
        with pytest.raises(ValueError, match="schedule id"):
            check_schedule_id(bad)
