"""A shard's local state store: RocksDB on the worker's disk, a cache of the history topic.

The compacted history partition stays the only source of truth; the store is a
materialized view of it that survives restarts, so memory holds only what is in use
and a restart reads only the records written since the store's checkpoint.

What it holds (one RocksDB database per shard; keys are bytes, ids length-prefixed so
that any workflow id sorts and scans correctly):

==========  ==========================================  ================================
prefix      key                                         value
==========  ==========================================  ================================
``m``       ``m`` + name                                meta (format, topic, partition),
                                                        checkpoint (next history offset)
``s``       ``s`` + workflow id                         the latest run's snapshot record
``e``       ``e`` + wf + run + seq (8 bytes)            a run's event record (until
                                                        the run's retention ends)
``t``       ``t`` + due (8 bytes) + wf + run + timer    (empty): timer index by due time
``u``       ``u`` + wf + run + timer                    due time: the timer's current due
``r``       ``r`` + expires (8 bytes) + wf + run        last seq: retention index
``v``       ``v`` + workflow id                         (empty): runs whose timers must be
                                                        recomputed by replay
``q``       ``q`` + wf + run                            (empty): runs seen by a restore
                                                        that no snapshot named yet
``w``       ``w`` + workflow id                         run id of the latest snapshot
``k``       ``k`` + workflow id                         (empty): parked runs, retried by
                                                        the next restore
``h``       ``h`` + wf + run + activity seq (8 bytes)   time + the activity's latest
                                                        heartbeat (not in history)
==========  ==========================================  ================================

Snapshot and event records are kept as they are on the topic (value and headers,
framed), so the store's format is the wire format and nothing is converted twice (``saga
describe`` and ``saga history`` read them from here:
:mod:`~orchestrator.worker.shard.reads`). Authoritative records (``s``, ``e``) and the
checkpoint are written in one atomic batch after the Kafka transaction that carried them
committed; the indexes (``t``, ``u``, ``r``, ``v``, ``q``) are written at once and
checked against the authoritative records when used, so an entry of a decision that was
never committed is harmless.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rocksdict import (
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    Options,
    Rdict,
    ReadOptions,
    WriteBatch,
    WriteBufferManager,
)

from orchestrator.log.headers import Headers
from orchestrator.worker.shard.records import ShardStateLost

log = logging.getLogger(__name__)

#: bump when the layout above changes: an older store is rebuilt from the topic
STORE_FORMAT = 1
_META_FORMAT = b"mformat"
_CHECKPOINT = b"mcheckpoint"
_U64 = struct.Struct(">Q")
_NONE_LEN = 0xFFFFFFFF


@dataclass(frozen=True)
class StoreOptions:
    """Where shard stores live and how much memory RocksDB may use (per process)."""

    #: folder of the stores: ``<state_dir>/<topic>/shard-<p>``
    state_dir: Path
    #: block cache shared by every shard store of the process
    block_cache_bytes: int = 32 * 1024 * 1024
    #: memtables of every shard store of the process, together
    write_buffer_bytes: int = 32 * 1024 * 1024


class StoreMemory:
    """The block cache and memtable budget shared by a process's shard stores."""

    def __init__(self, options: StoreOptions) -> None:
        self.options = options
        self.cache = Cache(options.block_cache_bytes)
        self.write_buffers = WriteBufferManager(options.write_buffer_bytes, False)

    def rocksdb_options(self) -> Options:
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_write_buffer_size(8 * 1024 * 1024)
        opts.set_max_write_buffer_number(2)
        opts.set_write_buffer_manager(self.write_buffers)
        opts.set_compression_type(DBCompressionType.lz4())
        opts.set_max_open_files(128)
        opts.set_max_background_jobs(2)
        table = BlockBasedOptions()
        table.set_block_cache(self.cache)
        table.set_bloom_filter(10, False)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        opts.set_block_based_table_factory(table)
        return opts


def ident(text: str) -> bytes:
    """A length-prefixed id: prefix scans of one id never match a longer id."""
    raw = text.encode()
    if len(raw) > 0xFFFF:
        raise ValueError("id longer than 65535 bytes")
    return len(raw).to_bytes(2, "big") + raw


def read_ident(buf: bytes, at: int) -> tuple[str, int]:
    """Decode an :func:`ident` at ``at``; returns it and the offset after it."""
    size = int.from_bytes(buf[at : at + 2], "big")
    end = at + 2 + size
    return buf[at + 2 : end].decode(), end


def u64(value: int) -> bytes:
    return _U64.pack(max(0, value))


def read_u64(buf: bytes, at: int = 0) -> int:
    value: int = _U64.unpack_from(buf, at)[0]
    return value


_NAMES: dict[str, bytes] = {}  # header names (a handful) with their length prefix
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_NONE = _U32.pack(_NONE_LEN)


def frame(headers: Headers, value: bytes) -> bytes:
    """A record's headers and value as one store value."""
    parts = [_U16.pack(len(headers))]
    for name, data in headers:
        encoded = _NAMES.get(name)
        if encoded is None:
            raw = name.encode()
            encoded = _U16.pack(len(raw)) + raw
            if len(_NAMES) < 64:  # the wire format's few names; never grows unbounded
                _NAMES[name] = encoded
        parts.append(encoded)
        if data is None:
            parts.append(_NONE)
        else:
            parts.append(_U32.pack(len(data)))
            parts.append(data)
    parts.append(value)
    return b"".join(parts)


def unframe(buf: bytes) -> tuple[Headers, bytes]:
    """Inverse of :func:`frame`."""
    u16, u32 = _U16.unpack_from, _U32.unpack_from
    (count,) = u16(buf)
    at = 2
    headers: Headers = []
    for _ in range(count):
        (size,) = u16(buf, at)
        raw = buf[at + 2 : at + 2 + size]
        name = _READ_NAMES.get(raw)
        if name is None:
            name = raw.decode()
            if len(_READ_NAMES) < 64:  # as for _NAMES
                _READ_NAMES[raw] = name
        (length,) = u32(buf, at + 2 + size)
        at += 6 + size
        if length == _NONE_LEN:
            headers.append((name, None))
        else:
            headers.append((name, buf[at : at + length]))
            at += length
    return headers, buf[at:]


_READ_NAMES: dict[bytes, str] = {}


def snapshot_key(workflow_id: str) -> bytes:
    return b"s" + workflow_id.encode()


def run_prefix(workflow_id: str, run_id: str) -> bytes:
    return ident(workflow_id) + ident(run_id)


def event_key(workflow_id: str, run_id: str, seq: int) -> bytes:
    return b"e" + run_prefix(workflow_id, run_id) + u64(seq)


def timer_due_key(due: int, workflow_id: str, run_id: str, timer_id: str) -> bytes:
    return b"t" + u64(due) + run_prefix(workflow_id, run_id) + timer_id.encode()


def timer_key(workflow_id: str, run_id: str, timer_id: str) -> bytes:
    return b"u" + run_prefix(workflow_id, run_id) + timer_id.encode()


def expiry_key(expires: int, workflow_id: str, run_id: str) -> bytes:
    return b"r" + u64(expires) + run_prefix(workflow_id, run_id)


def recovery_key(workflow_id: str) -> bytes:
    return b"v" + workflow_id.encode()


def seen_key(workflow_id: str, run_id: str) -> bytes:
    return b"q" + run_prefix(workflow_id, run_id)


def current_run_key(workflow_id: str) -> bytes:
    return b"w" + workflow_id.encode()


def parse_run(buf: bytes, at: int) -> tuple[str, str, int]:
    """Workflow id and run id encoded at ``at``, and the offset after them."""
    workflow_id, at = read_ident(buf, at)
    run_id, at = read_ident(buf, at)
    return workflow_id, run_id, at


def _after(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\xff" * (len(prefix) + 1)
    return stripped[:-1] + bytes([stripped[-1] + 1])


class StoreCorrupted(ShardStateLost):
    """The store failed a read or write after it opened (a corrupt block, an I/O
    error): the shard must be rebuilt from the topic."""


def _is_lock_error(exc: Exception) -> bool:
    """RocksDB's error for a database another process (or this one) holds open."""
    return "lock" in str(exc).lower()


class ShardStore:
    """One shard's RocksDB database (see the module docstring for the layout)."""

    def __init__(
        self, path: Path, db: Rdict, memory: StoreMemory, topic: str, partition: int
    ) -> None:
        self.path = path
        self._db = db
        self._memory = memory
        self._topic = topic
        self._partition = partition
        #: True when the store was created empty (missing, unusable or stale before)
        self.rebuilt = False

    # --- opening ------------------------------------------------------------------

    @classmethod
    def open(cls, memory: StoreMemory, topic: str, partition: int) -> ShardStore:
        """Open (or create) the store of ``topic``'s ``partition`` under the state dir.

        A store another process holds open (RocksDB's lock) is left alone: the next
        slot (``shard-<p>.1``, ...) is used, so two workers sharing a state dir on one
        machine never share a store. A store that cannot be used (corrupt, another
        format or partition) is wiped and created again empty; the caller then reads
        the partition from its beginning.
        """
        base = memory.options.state_dir / topic
        base.mkdir(parents=True, exist_ok=True)
        last_error: Exception | None = None
        for slot in range(16):
            path = base / (f"shard-{partition}" if slot == 0 else f"shard-{partition}.{slot}")
            try:
                return cls._open_at(memory, path, topic, partition)
            except Exception as exc:
                if not _is_lock_error(exc):
                    raise
                last_error = exc
        raise RuntimeError(f"no free store slot for {topic}/{partition} under {base}: {last_error}")

    @classmethod
    def _open_at(cls, memory: StoreMemory, path: Path, topic: str, partition: int) -> ShardStore:
        meta = f"{STORE_FORMAT}/{topic}/{partition}".encode()
        if (path / "CURRENT").exists():
            try:
                db = Rdict(str(path), memory.rocksdb_options())
            except Exception as exc:
                if _is_lock_error(exc):
                    raise
                log.warning("store %s unusable (%s): rebuilding it from the topic", path, exc)
            else:
                found = db.get(_META_FORMAT)
                if found == meta:
                    return cls(path, db, memory, topic, partition)
                log.warning("store %s holds %r, not %r: rebuilding it", path, found, meta)
                db.close()
            shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
        db = Rdict(str(path), memory.rocksdb_options())
        db[_META_FORMAT] = meta
        store = cls(path, db, memory, topic, partition)
        store.rebuilt = True
        return store

    def reset(self) -> ShardStore:
        """Wipe this store (found ahead of the log) and return a fresh, empty one."""
        self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        return self._open_at(self._memory, self.path, self._topic, self._partition)

    def close(self) -> None:
        self._db.close()

    # --- checkpoint -----------------------------------------------------------------

    @property
    def checkpoint(self) -> int:
        """The history offset to read from: every record before it is in the store."""
        found = self.get(_CHECKPOINT)
        return read_u64(found) if found is not None else 0

    # --- reads ------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        try:
            found = self._db.get(key)
        except Exception as exc:
            raise StoreCorrupted(f"store {self.path}: {exc}") from exc
        return None if found is None else bytes(found)

    def scan(
        self, prefix: bytes, limit: int | None = None, start: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Entries whose key starts with ``prefix``, in key order, from ``start`` (a
        key under ``prefix``) when given: a queue-like index read from its front skips
        the tombstones of the entries it already consumed."""
        opts = ReadOptions()
        opts.set_iterate_upper_bound(_after(prefix))
        it = self._db.iter(opts)
        it.seek(prefix if start is None else max(prefix, start))
        n = 0
        while it.valid() and (limit is None or n < limit):
            yield it.key(), it.value()
            n += 1
            it.next()
        if not it.valid():
            try:
                it.status()
            except Exception as exc:  # a scan that stops early must not look complete
                raise StoreCorrupted(f"store {self.path}: {exc}") from exc

    def count(self, prefix: bytes, after: bytes | None, limit: int) -> tuple[int, bytes | None]:
        """Count up to ``limit`` keys starting with ``prefix`` past key ``after`` (None:
        from the first). Returns the count and the last key counted, or None for that
        key when the prefix's end was reached (to count a large prefix a slice at a time)."""
        opts = ReadOptions()
        opts.set_iterate_upper_bound(_after(prefix))
        n, last = 0, None
        try:
            it = self._db.iter(opts)
            it.seek(prefix if after is None else after + b"\x00")
            while n < limit and it.valid():
                last = it.key()
                n += 1
                it.next()
            valid = it.valid()
        except Exception as exc:
            raise StoreCorrupted(f"store {self.path}: {exc}") from exc
        return n, (last if valid else None)

    def first(self, prefix: bytes) -> tuple[bytes, bytes] | None:
        return next(self.scan(prefix, 1), None)

    # --- writes -----------------------------------------------------------------------

    def put(self, key: bytes, value: bytes) -> None:
        try:
            self._db[key] = value
        except Exception as exc:
            raise StoreCorrupted(f"store {self.path}: {exc}") from exc

    def delete(self, key: bytes) -> None:
        try:
            del self._db[key]
        except Exception as exc:
            raise StoreCorrupted(f"store {self.path}: {exc}") from exc

    def write(self, puts: dict[bytes, bytes | None], checkpoint: int | None = None) -> None:
        """Apply ``puts`` (None deletes) and move the checkpoint, atomically."""
        batch = WriteBatch(raw_mode=True)
        for key, value in puts.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if checkpoint is not None:
            batch.put(_CHECKPOINT, u64(checkpoint))
        try:
            self._db.write(batch)
        except Exception as exc:
            raise StoreCorrupted(f"store {self.path}: {exc}") from exc

    def destroy(self) -> None:
        """Close and delete the store (it cannot be trusted); the next open rebuilds it."""
        with contextlib.suppress(Exception):
            self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)
