"""Flow-control verbs of the ``saga`` CLI: ``saga queue configure|describe|remove`` and
``saga dispatcher`` (docs/flow-control.md).

Registered on the ``saga`` group by :mod:`orchestrator.cli`.
"""

from __future__ import annotations

import datetime
import json
import signal as os_signal
import threading
from collections.abc import Callable
from typing import Any

import click

from orchestrator.config import Settings
from orchestrator.log.topics import TopicLayout
from orchestrator.serde.records import ActivityPause, FlowState

__all__ = ["describe_text", "paused_text", "register"]


def _weights(terms: tuple[str, ...]) -> dict[str, float]:
    found: dict[str, float] = {}
    for term in terms:
        key, sep, value = term.partition("=")
        try:
            found[key] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise click.BadParameter(f"{term!r} is not KEY=WEIGHT", param_hint="--weight")
    return found


def register(main: click.Group, layout_of: Callable[[Settings], TopicLayout]) -> None:
    """Add ``saga queue`` and ``saga dispatcher`` to ``main``."""

    @main.group()
    def queue() -> None:
        """Flow control of task queues: priority, fairness keys, rate limits."""

    _register_configure(queue, layout_of)
    _register_describe(queue, layout_of)
    _register_dispatcher(main, layout_of)


def _register_configure(queue: click.Group, layout_of: Callable[[Settings], TopicLayout]) -> None:

    @queue.command("configure")
    @click.argument("name")
    @click.option(
        "--rate",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Tasks per second for the whole queue (default: no limit).",
    )
    @click.option(
        "--burst",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        help="Tasks the queue may release at once after idling.",
    )
    @click.option(
        "--key-rate",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Tasks per second for each fairness key (default: no limit).",
    )
    @click.option("--key-burst", type=click.IntRange(min=1), default=1, show_default=True)
    @click.option(
        "--weight",
        "weights",
        multiple=True,
        metavar="KEY=WEIGHT",
        help="Weight of a fairness key (repeat).",
    )
    @click.option(
        "--default-weight",
        type=click.FloatRange(min=0, min_open=True),
        default=1.0,
        show_default=True,
    )
    @click.option(
        "--window",
        type=click.IntRange(min=0),
        default=64,
        show_default=True,
        help="Released tasks that may wait unstarted at the workers (0: no bound). "
        "Bounds how long a new high-priority or other-key task waits behind "
        "released ones; keep it above the workers' total --max-in-flight.",
    )
    def configure(  # noqa: PLR0917 - one option per setting
        name: str,
        rate: float | None,
        burst: int,
        key_rate: float | None,
        key_burst: int,
        weights: tuple[str, ...],
        default_weight: float,
        window: int,
    ) -> None:
        """Put task queue NAME under flow control (or change its settings).

        Its tasks then go through a backlog topic and a `saga dispatcher NAME`, which
        must run; engine workers pick the change up within a second."""
        from orchestrator.flow.configs import configure_queue
        from orchestrator.flow.scheduler import FlowConfig

        if name.endswith((".backlog", ".flow-state")):
            raise click.BadParameter("a queue name may not end in .backlog or .flow-state")
        settings = Settings.from_env()
        layout = layout_of(settings)
        try:
            config = FlowConfig(
                queue=name,
                rate=rate,
                burst=burst,
                key_rate=key_rate,
                key_burst=key_burst,
                weights=_weights(weights),
                default_weight=default_weight,
                window=window,
            )
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc
        configure_queue(settings.kafka_config(), layout, config)
        click.echo(f"flow control of {name}: {_config_text(config)}")

    @queue.command("remove")
    @click.argument("name")
    def remove(name: str) -> None:
        """Take task queue NAME out of flow control: new tasks go straight to its topic.

        Tasks still in the backlog keep being released while its dispatcher runs."""
        from orchestrator.flow.configs import write_config

        settings = Settings.from_env()
        write_config(settings.kafka_config(), layout_of(settings), None, name)
        click.echo(f"flow control of {name} removed")


def _register_describe(queue: click.Group, layout_of: Callable[[Settings], TopicLayout]) -> None:
    @queue.command("describe")
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
    def describe(name: str, *, as_json: bool) -> None:
        """Show NAME's flow control and what its dispatcher last recorded: tasks waiting
        per priority and key, released and throttled counts; and the activity types
        paused on NAME (`saga activity pause`)."""
        from orchestrator.flow.configs import describe_queue
        from orchestrator.worker.activity_pauses import read_pauses

        settings = Settings.from_env()
        layout = layout_of(settings)
        config, state = describe_queue(settings.kafka_config(), layout, name)
        paused = read_pauses(settings.kafka_config(), layout, name)
        if config is None and not paused:
            raise click.ClickException(
                f"task queue {name!r} has no flow control and no paused activity type"
            )
        if as_json:
            out: dict[str, Any] = {
                "config": None if config is None else _config_dict(config),
                "state": None,
                "paused": [
                    {"activity_type": p.activity_type, "reason": p.reason,
                     "operator": p.operator, "time": p.time}
                    for p in paused
                ],
            }
            if state is not None:
                out["state"] = {
                    f: getattr(state, f) for f in state.__dataclass_fields__ if f != "pending"
                }
            click.echo(json.dumps(out, sort_keys=True))
            return
        lines = [describe_text(name, config, state)] if config is not None else [
            f"queue      {name}", "config     no flow control",
        ]
        lines += [paused_text(p) for p in paused]
        click.echo("\n".join(lines))


def _register_dispatcher(main: click.Group, layout_of: Callable[[Settings], TopicLayout]) -> None:
    @main.command()
    @click.argument("name")
    @click.option(
        "--cycle-ms",
        type=click.IntRange(min=1),
        default=20,
        show_default=True,
        help="Longest wait between two dispatch decisions.",
    )
    @click.option(
        "--metrics-port",
        default=0,
        show_default=True,
        type=click.IntRange(min=0, max=65535),
        help="Serve Prometheus metrics on http://HOST:PORT/metrics (0: none).",
    )
    @click.option("--metrics-host", default="127.0.0.1", show_default=True)
    def dispatcher(name: str, cycle_ms: int, metrics_port: int, metrics_host: str) -> None:
        """Release task queue NAME's backlog to its workers under its flow control.

        Run one per queue, under a supervisor that restarts it: starting another
        fences the running one (it exits), so there is no standby."""
        from orchestrator.flow.dispatcher import Dispatcher
        from orchestrator.metrics import SagaMetrics, serve
        from orchestrator.metrics.flow import FlowMetrics

        settings = Settings.from_env()
        stop = threading.Event()
        os_signal.signal(os_signal.SIGTERM, lambda *_: stop.set())
        os_signal.signal(os_signal.SIGINT, lambda *_: stop.set())
        observe: Callable[[Any], None] | None = None
        close: Callable[[], None] = lambda: None  # noqa: E731
        if metrics_port:
            registry = SagaMetrics().registry
            observe = FlowMetrics(registry).observe
            try:
                close = serve(registry, metrics_host, metrics_port).close
            except OSError as exc:
                raise click.UsageError(
                    f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc}"
                ) from exc
        runner = Dispatcher(
            settings.kafka_config(),
            layout_of(settings),
            name,
            cycle_s=cycle_ms / 1000,
            on_state=observe,
        )
        click.echo("ready", err=True)
        try:
            runner.run(stop)
        finally:
            close()


def _config_dict(config: Any) -> dict[str, Any]:
    return {
        "rate": config.rate,
        "burst": config.burst,
        "key_rate": config.key_rate,
        "key_burst": config.key_burst,
        "weights": dict(config.weights),
        "default_weight": config.default_weight,
        "window": config.window,
    }


def _config_text(config: Any) -> str:
    rate = f"{config.rate:g}/s burst {config.burst}" if config.rate else "no limit"
    key = f"{config.key_rate:g}/s burst {config.key_burst}" if config.key_rate else "no limit"
    weights = ", ".join(f"{k}={w:g}" for k, w in sorted(config.weights.items()))
    return (
        f"rate {rate}; per key {key}; weights {weights or '-'} "
        f"(default {config.default_weight:g}); window {config.window}"
    )


def paused_text(p: ActivityPause) -> str:
    """One paused activity type, as ``saga queue describe`` prints it."""
    since = datetime.datetime.fromtimestamp(p.time / 1000, datetime.UTC)
    who = f" by {p.operator}" if p.operator else ""
    why = f": {p.reason}" if p.reason else ""
    return f"paused     {p.activity_type} since {since.isoformat(timespec='seconds')}{who}{why}"


def describe_text(name: str, config: Any, state: FlowState | None) -> str:
    """What ``saga queue describe`` prints."""
    lines = [f"queue      {name}", f"config     {_config_text(config)}"]
    if state is None:
        lines.append("dispatcher no state yet (nothing released)")
        return "\n".join(lines)
    at = datetime.datetime.fromtimestamp(state.time_ms / 1000, datetime.UTC)
    lines += [
        f"state at   {at.isoformat(timespec='seconds')}",
        f"released   {state.released}  unstarted {state.unstarted}",
        f"throttled  queue {state.throttled} cycles; window full {state.window_full}",
    ]
    lines += [
        f"           key {key or '(default)'}: {n} cycles"
        for key, n in sorted(state.throttled_keys.items())
    ]
    lines.append(f"waiting    {sum(state.waiting.values())}")
    rows: list[tuple[int, str, int]] = []
    for label, n in state.waiting.items():
        level, _, key = label.partition("/")
        rows.append((int(level), key, n))
    for priority, key, n in sorted(rows, key=lambda r: (-r[0], r[1])):
        released = state.released_keys.get(key, 0)
        lines.append(
            f"  priority {priority:>4}  key {key or '(default)':<20} waiting {n:>7}"
            f"  released {released}"
        )
    return "\n".join(lines)
