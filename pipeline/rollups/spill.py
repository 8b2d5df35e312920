"""Rollup state larger than memory: the coldest entries move to a local RocksDB database.

The workers' rollup state (stage 1's partials per raw partition, the merge
stage's merged rollups) lives in :class:`SpillMap`\\ s: dicts that keep at most
``capacity`` entries in memory, shared by all the maps of one :class:`Spill`.
When a flush leaves more than that in memory, the entries whose windows end
first (the least likely to receive actions, in event time) are encoded and
written to RocksDB, down to 80 % of the capacity, so that spills come in
batches rather than at every flush. Reading a spilled entry brings it back.

The database is a cache of what is already on Kafka, never a source of
truth: the changelog and partials topics restore the state, so each worker
process opens a fresh database of its own (``<data dir>/spill/pid-<pid>``),
writes it without a write-ahead log, and removes it on close; folders left
by processes that are gone are removed at start.
"""

from __future__ import annotations

import atexit
import heapq
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

#: Spill down to this share of the capacity, so that the next spill is some flushes away.
LOW_WATER = 0.8


class Spill:
    """One worker's RocksDB spill database and the in-memory budget of its maps."""

    def __init__(self, folder: Path | None, capacity: int) -> None:
        self.capacity = capacity
        self.folder = folder
        self.maps: list[SpillMap[Any, Any]] = []
        self._db: Rdict | None = None
        self._next_prefix = 0
        #: Entries written to and read back from the database, for metrics.
        self.counts = {"spilled": 0, "unspilled": 0}

    @property
    def db(self) -> Rdict:
        """The database, opened on first use (most workers never spill)."""
        if self._db is None:
            if self.folder is None:
                raise RuntimeError("no spill folder configured")
            _remove_stale(self.folder.parent)
            # A folder of this very pid is left from an earlier process (pid reuse, containers).
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True)
            self._db = Rdict(str(self.folder), Options(raw_mode=True))
            atexit.register(self.close)
            self._db.set_write_options(_no_wal())
            log.info("rollup state spills to %s (more than %d entries in memory)", self.folder, self.capacity)
        return self._db

    def new_map(
        self,
        encode_key: Callable[[K], bytes],
        dump: Callable[[V], bytes],
        load: Callable[[bytes], V],
        coldness: Callable[[K], int],
    ) -> SpillMap[K, V]:
        """A map in this spill's budget (``coldness``: lower spills first)."""
        prefix = self._next_prefix.to_bytes(4, "big")
        self._next_prefix += 1
        spill_map = SpillMap(self, prefix, encode_key, dump, load, coldness)
        self.maps.append(spill_map)
        return spill_map

    def forget(self, spill_map: SpillMap[Any, Any]) -> None:
        """Stop budgeting ``spill_map`` and drop what it spilled (a partition given away)."""
        spill_map.clear()
        if spill_map in self.maps:
            self.maps.remove(spill_map)

    def in_memory(self) -> int:
        """Entries held in memory by all maps."""
        return sum(len(m.hot) for m in self.maps)

    def balance(self, keep: Callable[[SpillMap[Any, Any], Any], bool] | None = None) -> int:
        """Spill the coldest entries when more than ``capacity`` are in memory; how many moved.

        ``keep(map, key)`` protects entries that must stay in memory (not flushed yet).
        """
        held = self.in_memory()
        if self.capacity <= 0 or held <= self.capacity:
            return 0
        excess = held - int(self.capacity * LOW_WATER)
        candidates = (
            (spill_map.coldness(key), n, key)
            for n, spill_map in enumerate(self.maps)
            for key in spill_map.hot
            if keep is None or not keep(spill_map, key)
        )
        coldest = heapq.nsmallest(excess, candidates, key=lambda c: c[0])
        batch = WriteBatch(raw_mode=True)
        moved = []
        for _, n, key in coldest:
            spill_map = self.maps[n]
            db_key = spill_map.prefix + spill_map.encode_key(key)
            batch.put(db_key, spill_map.dump(spill_map.hot[key]))
            moved.append((spill_map, key, db_key))
        self.db.write(batch)
        # Only now out of memory: an encoding or write error leaves every entry where it was.
        for spill_map, key, db_key in moved:
            del spill_map.hot[key]
            spill_map.cold[key] = db_key
        self.counts["spilled"] += len(coldest)
        return len(coldest)

    def close(self) -> None:
        """Close and remove the database."""
        if self._db is not None:
            self._db.close()
            self._db = None
            if self.folder is not None:
                shutil.rmtree(self.folder, ignore_errors=True)


class SpillMap(Generic[K, V]):
    """A dict of which the coldest values may live in the spill database (see the module doc)."""

    def __init__(
        self,
        spill: Spill,
        prefix: bytes,
        encode_key: Callable[[K], bytes],
        dump: Callable[[V], bytes],
        load: Callable[[bytes], V],
        coldness: Callable[[K], int],
    ) -> None:
        self.spill = spill
        self.prefix = prefix
        self.encode_key = encode_key
        self.dump = dump
        self.load = load
        self.coldness = coldness
        self.hot: dict[K, V] = {}
        #: Spilled keys and their database keys.
        self.cold: dict[K, bytes] = {}

    def __len__(self) -> int:
        return len(self.hot) + len(self.cold)

    def __contains__(self, key: object) -> bool:
        return key in self.hot or key in self.cold

    def __iter__(self) -> Iterator[K]:
        yield from list(self.hot)
        yield from list(self.cold)

    def __getitem__(self, key: K) -> V:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        self._drop_cold(key)
        self.hot[key] = value

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value, read back from the database (and kept in memory again) if it was spilled."""
        value = self.hot.get(key)
        if value is not None:
            return value
        db_key = self.cold.pop(key, None)
        if db_key is None:
            return default
        db = self.spill.db
        raw = db[db_key]
        assert isinstance(raw, bytes)
        value = self.load(raw)
        del db[db_key]
        self.spill.counts["unspilled"] += 1
        self.hot[key] = value
        return value

    def pop(self, key: K, default: V | None = None) -> V | None:
        """Remove and return the value (read back if spilled)."""
        value = self.get(key)
        if value is None:
            return default
        del self.hot[key]
        return value

    def discard(self, key: K) -> None:
        """Remove ``key`` if present, without reading a spilled value back."""
        self.hot.pop(key, None)
        self._drop_cold(key)

    def clear(self) -> None:
        """Remove everything, spilled entries included."""
        for key in list(self.cold):
            self._drop_cold(key)
        self.hot.clear()

    def _drop_cold(self, key: K) -> None:
        db_key = self.cold.pop(key, None)
        if db_key is not None:
            del self.spill.db[db_key]


def spill_folder(data_dir: Path) -> Path:
    """This process's spill database folder under ``data_dir``."""
    return data_dir / "spill" / f"pid-{os.getpid()}"


def _remove_stale(parent: Path) -> None:
    """Remove the spill folders of processes that no longer run."""
    if not parent.is_dir():
        return
    for folder in parent.glob("pid-*"):
        pid = folder.name.removeprefix("pid-")
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _no_wal() -> WriteOptions:
    options = WriteOptions()
    # A property at run time, a method in the type stubs.
    setattr(options, "disable_wal", True)  # noqa: B010
    return options
