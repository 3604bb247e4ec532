"""The catch-up rule with an injected clock: what is due, what is missed after a
downtime, and how jitter moves a firing."""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrator.schedules.calendar import jitter_ms, to_ms
from orchestrator.schedules.catchup import scan_due
from orchestrator.schedules.spec import ScheduleSpec

MINUTE = 60_000
T0 = to_ms(datetime(2026, 1, 1, tzinfo=UTC))
EVERY_MINUTE = ScheduleSpec(interval_s=60)


def test_nothing_is_due_before_the_next_nominal_time() -> None:
    scan = scan_due(EVERY_MINUTE, "s", T0, T0 + MINUTE - 1, 300)
    assert (scan.due, scan.bulk_missed, scan.cursor_ms) == ([], 0, T0)


def test_a_firing_on_time_is_due_and_moves_the_cursor() -> None:
    scan = scan_due(EVERY_MINUTE, "s", T0, T0 + MINUTE + 5, 300)
    assert scan.due == [(T0 + MINUTE, False)]
    assert scan.cursor_ms == T0 + MINUTE


def test_after_an_hour_down_only_the_catchup_window_runs() -> None:
    now = T0 + 60 * MINUTE + 30_000  # every worker was down from T0 to now
    scan = scan_due(EVERY_MINUTE, "s", T0, now, 300)
    # minutes 1..55 are more than 5 minutes late; 56..60 are within the window
    assert scan.bulk_missed == 55
    assert scan.due == [(T0 + k * MINUTE, False) for k in range(56, 61)]
    assert scan.cursor_ms == T0 + 60 * MINUTE


def test_a_zero_window_runs_only_what_is_exactly_on_time() -> None:
    scan = scan_due(EVERY_MINUTE, "s", T0, T0 + 3 * MINUTE, 0)
    assert scan.bulk_missed + sum(missed for _, missed in scan.due) == 2
    assert scan.due[-1] == (T0 + 3 * MINUTE, False)


def test_a_firing_just_outside_the_window_is_listed_as_missed() -> None:
    spec = ScheduleSpec(interval_s=60, jitter_s=30)
    nominal = T0 + MINUTE
    at = nominal + jitter_ms("s", nominal, 30)
    late = scan_due(spec, "s", T0, at + 10_001, 10)
    assert (nominal, True) in late.due
    on_time = scan_due(spec, "s", T0, at + 10_000, 10)
    assert (nominal, False) in on_time.due


def test_jitter_delays_the_firing_but_keeps_its_nominal_time() -> None:
    spec = ScheduleSpec(interval_s=60, jitter_s=20)
    nominal = T0 + MINUTE
    delay = jitter_ms("s", nominal, 20)
    assert scan_due(spec, "s", T0, nominal + delay - 1, 300).due == []
    assert scan_due(spec, "s", T0, nominal + delay, 300).due == [(nominal, False)]
