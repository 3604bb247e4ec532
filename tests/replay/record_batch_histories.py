"""Record the batch workflow's histories: ``python -m tests.replay.record_batch_histories
[--overwrite]``.

Only on purpose: the saved files stand for batches already running in production.
"""

from __future__ import annotations

import asyncio
import sys

from tests.replay import batch_scenarios as sc
from tests.replay.record_histories import save


def main(argv: list[str] | None = None) -> None:
    """Write the histories not saved yet (all of them with ``--overwrite``)."""
    args = sys.argv[1:] if argv is None else argv
    save(asyncio.run(sc.in_memory_histories()), overwrite="--overwrite" in args)


if __name__ == "__main__":
    main()
