"""Record the saved in-memory histories: ``python -m tests.replay.record_histories``.

Only do this on purpose: the saved files stand for executions already running in
production, which new code must keep replaying.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from orchestrator.engine import events as ev
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.replayer import history_to_json
from orchestrator.exceptions import WorkflowFailedError
from orchestrator.testing import WorkflowEnvironment
from orchestrator.workflow import definition_of
from tests.replay import sample_sagas as s
from tests.replay.shipped_scenarios import in_memory_scenarios

HERE = Path(__file__).parent / "histories"


async def scenarios() -> dict[str, list[ev.Event]]:
    """Run each acceptance scenario once; the history of each, by file stem."""
    env = WorkflowEnvironment(
        workflows=[s.transfer, s.Subscription, s.payout, s.trip, s.Cart, s.versioned_v1],
        activities=s.ALL_ACTIVITIES,
    )
    out: dict[str, list[ev.Event]] = {}

    async def run(stem: str, wf: object, *args: object) -> None:
        handle = await env.start_workflow(wf, *args, id=stem)
        with contextlib.suppress(WorkflowFailedError):
            await handle.result()
        out[stem] = handle.history

    await run("transfer_ok", s.transfer, s.TransferRequest("alice", "bob", 5))
    await run("transfer_step3_fails", s.transfer,
              s.TransferRequest("alice", "bob", 100, fail_at="notify"))
    await run("subscription_12_months", s.Subscription, "cust-1")
    sub = await env.start_workflow(s.Subscription, "cust-2", id="subscription_cancelled")
    await env.sleep(timedelta(days=135))
    await sub.signal("cancel")
    await sub.result()
    out["subscription_cancelled"] = sub.history
    await run("payout_5_day_expiry", s.payout, s.PayoutRequest("acc", 10, expire_days=5))
    await run("payout_1_day_expiry", s.payout, s.PayoutRequest("acc", 10, expire_days=1))
    await run("trip_hotel_fails", s.trip, s.TripRequest("zoe", fail_at="hotel"))
    cart = await env.start_workflow(s.Cart, id="cart_updates")
    await cart.update("add_item", "apple")
    await cart.update("add_item", "pear")
    await cart.signal("checkout")
    await cart.result()
    out["cart_updates"] = cart.history
    await run("versioned_v1", s.versioned_v1)
    return out


async def _all() -> dict[str, list[ev.Event]]:
    return {**await scenarios(), **await in_memory_scenarios()}


def save(histories: Mapping[str, Sequence[ev.Event]], *, overwrite: bool) -> None:
    """Write ``<stem>.json`` for each history; one already saved is kept unless
    ``overwrite``."""
    HERE.mkdir(exist_ok=True)
    for stem, history in histories.items():
        path = HERE / f"{stem}.json"
        if path.exists() and not overwrite:
            print(f"kept {path.name} (--overwrite replaces it)")
            continue
        path.write_text(history_to_json(history) + "\n")
        print(f"wrote {path.name} ({len(history)} events)")


def assert_replays_to_the_same_commands(
    workflows: Sequence[Any], histories: Mapping[str, list[ev.Event]]
) -> None:
    """Each history, replayed by ``workflows``, issues no command beyond it and is
    rebuilt event for event."""
    by_name = {definition_of(w).name: definition_of(w) for w in workflows}
    for stem, history in histories.items():
        started = history[0]
        assert isinstance(started, ev.WorkflowStarted)
        replayed = WorkflowExecutor(by_name[started.workflow_type], history)
        assert replayed.apply([], history[-1].time).events == [], stem
        assert replayed.history == history, stem


def main(argv: list[str] | None = None) -> None:
    """Write the sample sagas' and the shipped sagas' in-memory histories that are not
    saved yet (all of them with ``--overwrite``). The shipped sagas' Kafka histories:
    ``python -m tests.replay.record_kafka_histories``."""
    overwrite = "--overwrite" in (sys.argv[1:] if argv is None else argv)
    save(asyncio.run(_all()), overwrite=overwrite)


if __name__ == "__main__":
    main()
