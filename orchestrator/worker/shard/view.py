"""The shard store as the live shard sees it: the database plus writes not yet committed.

Every write a decision makes (snapshots, events, timer and retention index entries,
the recovery and parked sets) joins the current *generation*. The processor seals it
when it hands the decision's records to Kafka and applies it to RocksDB, in one atomic
batch with the new checkpoint, once that transaction committed. Until then reads go
through the generations, newest first, then the database. A failed transaction drops
the view with its generations: the database still holds exactly the committed state,
so nothing that was decided but never committed (a timer popped for firing, a
cancelled timer, a tombstoned run) can leave a trace on disk.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from orchestrator.worker.shard.store import ShardStore


@dataclass(slots=True)
class Generation:
    """The writes of one transaction (None deletes)."""

    number: int
    puts: dict[bytes, bytes | None] = field(default_factory=dict)
    #: the keys written, by their first byte (key space), so a prefix scan looks only
    #: at the keys of its own space
    spaces: dict[int, set[bytes]] = field(default_factory=dict)

    def put(self, key: bytes, value: bytes | None) -> None:
        self.puts[key] = value
        space = self.spaces.get(key[0])
        if space is None:
            self.spaces[key[0]] = {key}
        else:
            space.add(key)


class StoreView:
    """Reads and writes of a live shard (see the module docstring)."""

    def __init__(self, store: ShardStore) -> None:
        self.store = store
        self._gens: list[Generation] = [Generation(1)]  # oldest first; the last is open

    @property
    def current(self) -> Generation:
        return self._gens[-1]

    # --- writes -----------------------------------------------------------------------

    def put(self, key: bytes, value: bytes) -> None:
        self.current.put(key, value)

    def delete(self, key: bytes) -> None:
        self.current.put(key, None)

    def clear(self, prefix: bytes) -> None:
        """Delete every key under ``prefix`` that the view holds now, one by one.

        Point deletes, not a RocksDB range deletion: range tombstones are checked by
        every later read, and one per closed run slowed a restore of 50,000 closed
        runs from 11 s to 68 s."""
        for key, _ in list(self.scan(prefix)):
            self.delete(key)

    # --- generations ------------------------------------------------------------------

    def seal(self) -> Generation:
        """Close the open generation (its transaction goes to Kafka); open the next."""
        sealed = self.current
        self._gens.append(Generation(sealed.number + 1))
        return sealed

    def apply(self, sealed: Generation, checkpoint: int | None) -> None:
        """``sealed``'s transaction committed: write it to the database."""
        assert self._gens[0] is sealed, "generations are applied in order"
        if sealed.puts or checkpoint is not None:
            self.store.write(sealed.puts, checkpoint)
        self._gens.pop(0)

    @property
    def unchanged(self) -> bool:
        """Nothing written since the last applied generation (none sealed waits either)."""
        return len(self._gens) == 1 and not self._gens[0].puts

    def move_checkpoint(self, checkpoint: int | None) -> None:
        """A transaction that changed nothing in this store committed (sealed while
        :attr:`unchanged`): only its history offset, if any, is written."""
        if checkpoint is not None:
            self.store.write({}, checkpoint)

    def apply_open(self) -> None:
        """Write the open generation at once (a standby copy: nothing to commit)."""
        if len(self._gens) == 1:
            self.apply(self.seal(), None)

    @property
    def applied(self) -> int:
        """The number of the latest generation in the database."""
        return self._gens[0].number - 1

    @property
    def generation(self) -> int:
        """The number of the open generation."""
        return self.current.number

    # --- reads ------------------------------------------------------------------------

    def _decided(self, key: bytes) -> tuple[bool, bytes | None]:
        """(True, value) when an unapplied generation has written ``key``."""
        for gen in reversed(self._gens):
            if key in gen.puts:
                return True, gen.puts[key]
        return False, None

    def get(self, key: bytes) -> bytes | None:
        found, value = self._decided(key)
        return value if found else self.store.get(key)

    def scan(
        self, prefix: bytes, limit: int | None = None, start: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Visible entries under ``prefix`` in key order (from ``start`` when given)."""
        low = prefix if start is None else max(prefix, start)
        pending = sorted(
            {
                k
                for gen in self._gens
                for k in gen.spaces.get(prefix[0], ())
                if k >= low and k.startswith(prefix)
            }
        )
        overlay = ((k, v) for k in pending for _, v in [self._decided(k)] if v is not None)
        stored = (
            (k, v) for k, v in self.store.scan(prefix, start=start) if not self._decided(k)[0]
        )
        merged = heapq.merge(overlay, stored, key=lambda kv: kv[0])
        yield from itertools.islice(merged, limit)

    def first(self, prefix: bytes) -> tuple[bytes, bytes] | None:
        return next(self.scan(prefix, 1), None)
