"""``saga`` whose engine's first transaction hangs in ``send_offsets_to_transaction``
after its records are produced, as librdkafka does while the group coordinator is down
(librdkafka #5456, #5511), with ``stuck_commit_s`` cut to 5 s: the processor must fence
the stuck transaction with a new producer and go on serving.

    python -m tests.integration.stuck_offsets_worker worker --sagas ...
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from orchestrator.cli import main
from orchestrator.worker.shard import processor

STUCK_COMMIT_S = 5.0


class _HangsOnce:
    """A producer whose first ``send_offsets_to_transaction`` never returns."""

    hung = False

    def __init__(self, producer: Any) -> None:
        self._producer = producer

    def send_offsets_to_transaction(self, *args: Any) -> Any:
        if not _HangsOnce.hung:
            _HangsOnce.hung = True
            print("send_offsets_to_transaction hangs", flush=True)
            threading.Event().wait()
        return self._producer.send_offsets_to_transaction(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)


_init = processor.ShardProcessor.__init__
_new_producer = processor.ShardProcessor._new_producer


def _init_short(self: processor.ShardProcessor, *args: Any, **kwargs: Any) -> None:
    _init(self, *args, **kwargs)
    self.options = dataclasses.replace(self.options, stuck_commit_s=STUCK_COMMIT_S)


def _hanging_producer(self: processor.ShardProcessor, init_timeout_s: float = 30.0) -> Any:
    return _HangsOnce(_new_producer(self, init_timeout_s))


processor.ShardProcessor.__init__ = _init_short  # type: ignore[method-assign]
processor.ShardProcessor._new_producer = _hanging_producer  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
