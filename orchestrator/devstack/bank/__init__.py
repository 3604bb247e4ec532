"""A demo bank: accounts in PostgreSQL behind a real HTTP API, with fault injection.

Start it in-process with :class:`BankServer` (tests, the demo) or as a process
with ``python -m orchestrator.devstack.bank --dsn ...``. See docs/connectors.md.
"""

from orchestrator.devstack.bank.app import build_app
from orchestrator.devstack.bank.faults import FaultCounters, Faults
from orchestrator.devstack.bank.server import BankServer

__all__ = ["BankServer", "FaultCounters", "Faults", "build_app"]
