"""Fault suite: repeat each scenario's summary line at the end of the pytest run."""

from __future__ import annotations

import pytest

from tests.faults.harness import SUMMARIES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARIES:
        terminalreporter.section("fault scenarios")
        for line in SUMMARIES:
            terminalreporter.write_line(line)
