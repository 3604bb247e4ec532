"""Producer settings for records that someone waits for (tasks, outcomes, commands)."""

from __future__ import annotations

from typing import Any

#: Send each record at once when nothing is in flight; records produced while a request
#: is in flight go together in the next one. Batching then grows with load on its own,
#: instead of every record paying a fixed ``linger.ms`` (1 ms cost each hop of a saga
#: about 1 ms at 50 sagas/s; docs/benchmarks.md, "Prompt producers"). One request in
#: flight per broker keeps idempotent ordering and bounds the requests per second the
#: broker serves to one per round trip.
PROMPT_PRODUCER: dict[str, Any] = {
    "enable.idempotence": True,
    "linger.ms": 0,
    "max.in.flight.requests.per.connection": 1,
}
