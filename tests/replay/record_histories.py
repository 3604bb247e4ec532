"""Re-record the saved histories: ``python -m tests.replay.record_histories``.

Only do this on purpose: the saved files stand for executions already running in
production, which new code must keep replaying.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from pathlib import Path

from orchestrator.engine import events as ev
from orchestrator.engine.replayer import history_to_json
from orchestrator.exceptions import WorkflowFailedError
from orchestrator.testing import WorkflowEnvironment
from tests.replay import sample_sagas as s

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


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for stem, history in asyncio.run(scenarios()).items():
        (HERE / f"{stem}.json").write_text(history_to_json(history) + "\n")
        print(f"wrote {stem}.json ({len(history)} events)")


if __name__ == "__main__":
    main()
