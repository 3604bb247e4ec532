"""``python -m orchestrator.devstack.bank --dsn DSN [--port N]``: run the demo bank.

Prints ``BANK_URL=http://127.0.0.1:<port>`` once it serves, then runs until
SIGTERM or Ctrl-C. Faults are controlled through ``PUT /admin/faults``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import threading

from orchestrator.devstack.bank.server import BankServer


def main(argv: list[str] | None = None) -> int:
    """Run the bank until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m orchestrator.devstack.bank")
    parser.add_argument("--dsn", default=os.environ.get("DATABASE_URL"), help="PostgreSQL DSN")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random error draws")
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error("--dsn or $DATABASE_URL is required")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with BankServer(args.dsn, host=args.host, port=args.port, seed=args.seed) as bank:
        print(f"BANK_URL={bank.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
