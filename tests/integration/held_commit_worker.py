"""``saga`` whose engine never commits a transaction that follows early activity
tasks: it prints a line and waits there, for a test to SIGKILL it between an early
task's dispatch and the commit of the decision that scheduled it.

    python -m tests.integration.held_commit_worker worker --sagas ...
"""

from __future__ import annotations

import time
from typing import Any

from orchestrator.cli import main
from orchestrator.worker.shard import processor

_commit = processor.ShardProcessor._commit


def _held(
    self: processor.ShardProcessor, producer: Any, out: Any, offsets: Any, group: Any,
    **kwargs: Any,
) -> Any:
    early = kwargs.get("early")
    if early is not None and len(early):
        print("early tasks sent; commit held", flush=True)
        time.sleep(3600)
    return _commit(self, producer, out, offsets, group, **kwargs)


processor.ShardProcessor._commit = _held  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
