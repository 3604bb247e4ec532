"""``saga`` whose engine holds a batch for handed outcomes a minute instead of 5 ms,
and says when it has sent the held batch's records into its transaction ahead of the
commit (orchestrator/worker/shard/sent_ahead.py): a test kills it while that
transaction is open.

    python -m tests.integration.handoff_long_hold_worker worker --sagas ...
"""

from __future__ import annotations

from orchestrator.cli import main
from orchestrator.worker.shard import handoff_batches, processor

HOLD_S = 60.0

_defaults = handoff_batches.HandoffBatches.__init__.__defaults__ or ()
handoff_batches.HandoffBatches.__init__.__defaults__ = (HOLD_S, *_defaults[1:])
_send_ahead = processor.ShardProcessor._send_ahead


def _told(self: processor.ShardProcessor) -> None:
    before = self.metrics.sent_ahead
    _send_ahead(self)
    if self.metrics.sent_ahead > before:
        print(f"sent ahead: {self.metrics.sent_ahead} records", flush=True)


processor.ShardProcessor._send_ahead = _told  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
