"""Record the operation handler workflow's histories: ``python -m
tests.replay.record_operation_histories [--overwrite]``.

Only on purpose: the saved files stand for operations already being handled.
"""

from __future__ import annotations

import asyncio
import sys

from tests.replay import operation_scenarios as sc
from tests.replay.record_histories import save


def main(argv: list[str] | None = None) -> None:
    """Write the histories not saved yet (all of them with ``--overwrite``)."""
    args = sys.argv[1:] if argv is None else argv
    save(asyncio.run(sc.in_memory_histories()), overwrite="--overwrite" in args)


if __name__ == "__main__":
    main()
