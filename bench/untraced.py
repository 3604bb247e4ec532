"""Run the saga CLI with tracing taken out, for ``bench/engine_bench.py --tracing off``:
the baseline the API-only default is compared with. Every hop's check answers False
without looking, and a hop is an empty context; records still carry the traceparent
they received (that is the wire format, not tracing).

    python -m bench.untraced --log-level INFO worker --sagas bench.bench_sagas ...
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from orchestrator import tracing


def _never() -> bool:
    return False


@contextmanager
def _no_hop(*_args: Any, **_kwargs: Any) -> Iterator[tracing.Hop]:
    yield tracing.Hop(None)


def main(argv: list[str]) -> None:
    tracing.recording = _never  # type: ignore[assignment]
    tracing.hop = _no_hop  # type: ignore[assignment]
    from orchestrator.cli import main as saga

    saga(argv, prog_name="saga")


if __name__ == "__main__":
    main(sys.argv[1:])
