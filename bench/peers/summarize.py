"""Median of the repeated runs written by bench/peers/run_all.sh, one line per setup.

    .venv/bin/python bench/peers/summarize.py .cache/bench-peers/<timestamp>

For each setup (file name without the trailing ``-<run>``): the median throughput,
p50 and p99, each run's figures, the load averages (1 min) seen before each run,
and for our runs the engine's mean Kafka transaction commit time from its log; first,
the ``SKIPPED <peer>: <reason>`` lines of peers that could not be set up.
"""

from __future__ import annotations

import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

FIGURES = re.compile(
    r"throughput: (?P<tput>\d+) .*?\n.*?p50 (?P<p50>[\d.]+) ms, p99 (?P<p99>[\d.]+) ms", re.S
)
RESTORE = re.compile(r"restore: .* in (?P<s>[\d.]+)s")
LOAD = re.compile(r"before: .*load average: (?P<l1>[\d.]+)")
LOGS = re.compile(r"logs: (?P<dir>\S+)")
COMMIT = re.compile(r"transactions=(?P<n>\d+) .*commit_ms_avg=(?P<avg>[\d.]+)")


def commit_ms(text: str) -> float | None:
    """Transaction-weighted mean commit time of the engine over the run, from its log."""
    found = LOGS.search(text)
    log = Path(found["dir"]) / "engine-0.log" if found else None
    if log is None or not log.exists():
        return None
    total_n, total_ms, previous = 0, 0.0, 0
    for match in COMMIT.finditer(log.read_text()):
        n = int(match["n"])  # cumulative count: weight each report by its new transactions
        total_ms += (n - previous) * float(match["avg"])
        total_n += n - previous
        previous = n
    return total_ms / total_n if total_n else None


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    runs: dict[str, list[dict[str, float]]] = defaultdict(list)
    skipped = folder / "skipped.log"  # peers run_all.sh could not set up
    if skipped.exists():
        print(skipped.read_text(), end="")
    for path in sorted(folder.glob("*.txt")):
        setup = path.stem.rsplit("-", 1)[0]
        text = path.read_text()
        figures = FIGURES.search(text)
        if figures is None:
            print(f"{path.name}: no figures (failed run?)")
            continue
        row = {k: float(v) for k, v in figures.groupdict().items()}
        if (restore := RESTORE.search(text)) is not None:
            row["restore_s"] = float(restore["s"])
        if (load := LOAD.search(text)) is not None:
            row["load1"] = float(load["l1"])
        if (commit := commit_ms(text)) is not None:
            row["commit_ms"] = commit
        runs[setup].append(row)
    for setup, rows in runs.items():
        med = {
            k: statistics.median(r[k] for r in rows) for k in rows[0] if all(k in r for r in rows)
        }
        each = "; ".join(f"{r['tput']:.0f}/s p50 {r['p50']:.0f} p99 {r['p99']:.0f}" for r in rows)
        extra = ""
        if "restore_s" in med:
            extra += f" restore {med['restore_s']:.2f}s"
        if "commit_ms" in med:
            extra += f" engine commit avg {med['commit_ms']:.0f} ms"
        loads = ", ".join(f"{r.get('load1', float('nan')):.2f}" for r in rows)
        print(
            f"{setup}: median {med['tput']:.0f}/s p50 {med['p50']:.1f} ms p99 {med['p99']:.1f} ms"
            f"{extra} | runs: {each} | load1 before: {loads}"
        )


if __name__ == "__main__":
    main()
