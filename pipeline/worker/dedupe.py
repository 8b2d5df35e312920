"""Which actions a raw partition has already seen, by event id, over a bounded window of event time.

An action's id is ``(application.id, session.id, action.id)``: the browser SDK
gives every action a unique ``action.id`` and retries a batch it got no answer
for with the same ids, so a copy has the same id and the same event time
(``date``). The raw topic is keyed by ``session.id``, so the copies of an
action meet on one raw partition, whose owner keeps this set.

Memory: ids are kept as 64-bit fingerprints (BLAKE2b of the three fields), per
hour of event time, in sorted arrays of 8 bytes per id; the ids seen since the
last flush wait in a plain set until then. Most actions are no copies, and a
new id would be looked up in every array of its hour: a bitmap of 8 to 16
bits per flushed id (1-2 bytes), indexed by the fingerprint's low bits, says
"not there" at once for 88-94 % of them (a one-hash Bloom filter; a set bit
only means "look in the arrays", so it never makes an id a copy). Two
different actions of one partition share a fingerprint with probability about
n² / 2⁶⁵ (n ids in the window: below 10⁻⁶ for 6 million ids), which would drop
the later one as a copy.

Durability: :meth:`SeenIds.changes` gives the records to write to the
partition's changelog at each commit (each flush's new ids as one record per
hour, compacted into one record per hour once 8 pile up, and tombstones for
hours past the window); :meth:`SeenIds.restore` reads them back.

Window: an hour is forgotten once it ends more than ``window_ms`` before the
latest event time seen on the partition. Older actions are not checked (they
are far too late for any rollup window anyway) and are counted as such.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from hashlib import blake2b
from typing import Any

HOUR_MS = 3_600_000
_from_bytes = int.from_bytes
#: Records of one hour on the changelog before they are written again as one.
MAX_RUNS = 8
PREFIX = b"seen/"
LATEST_KEY = PREFIX + b"latest"
#: Smallest filter of an hour's flushed ids, in bits.
MIN_FILTER_BITS = 1024


def fingerprint(application: Any, session: Any, action: Any) -> int:
    """The 64-bit fingerprint of an action id (stable across processes and versions)."""
    text = f"{application}\x1f{session}\x1f{action}".encode("utf-8", "surrogatepass")
    return _from_bytes(blake2b(text, digest_size=8).digest(), "little")


def action_id(event: dict[str, Any]) -> tuple[Any, Any, Any] | None:
    """``(application.id, session.id, action.id)`` of a raw action, or None without an ``action.id``."""
    action = event.get("action")
    ident = action.get("id") if isinstance(action, dict) else None
    if ident is None or ident == "":
        return None
    application = event.get("application")
    session = event.get("session")
    return (
        application.get("id") if isinstance(application, dict) else None,
        session.get("id") if isinstance(session, dict) else None,
        ident,
    )


def _pack(ids: array) -> bytes:
    if sys.byteorder == "big":
        ids = array("Q", ids)
        ids.byteswap()
    return ids.tobytes()


def _unpack(raw: bytes) -> array:
    ids = array("Q")
    ids.frombytes(raw)
    if sys.byteorder == "big":
        ids.byteswap()
    return ids


class _Hour:
    """The ids of one hour of event time: sorted runs as on the changelog, and the new ones."""

    __slots__ = ("bits", "mask", "new", "next_seq", "runs", "seqs")

    def __init__(self) -> None:
        self.new: set[int] = set()
        self.runs: list[array] = []
        #: The changelog record number of each run.
        self.seqs: list[int] = []
        self.next_seq = 0
        #: Bit ``value & mask`` is set for every value of the runs (and maybe for others).
        self.bits = bytearray(MIN_FILTER_BITS // 8)
        self.mask = MIN_FILTER_BITS - 1

    def __contains__(self, value: int) -> bool:
        return value in self.new or self.in_runs(value)

    def in_runs(self, value: int) -> bool:
        """True when ``value`` is in one of the flushed runs."""
        bit = value & self.mask
        if not self.bits[bit >> 3] >> (bit & 7) & 1:
            return False
        for run in self.runs:
            i = bisect_left(run, value)
            if i < len(run) and run[i] == value:
                return True
        return False

    def __len__(self) -> int:
        return len(self.new) + sum(len(run) for run in self.runs)

    def add_run(self, run: array, seq: int) -> None:
        """A flushed or restored run; a run of the same changelog record number replaces it."""
        if seq in self.seqs:
            self.runs[self.seqs.index(seq)] = run
        else:
            self.seqs.append(seq)
            self.runs.append(run)
        flushed = sum(len(r) for r in self.runs)
        if flushed * 8 > self.mask + 1:  # below 8 bits an id: 8 to 16 again
            size = MIN_FILTER_BITS
            while size < flushed * 8:
                size *= 2
            self.bits = bytearray(size // 8)
            self.mask = size - 1
            for each in self.runs:
                self._mark(each)
        else:
            self._mark(run)

    def _mark(self, run: array) -> None:
        bits, mask = self.bits, self.mask
        for value in run:
            bit = value & mask
            bits[bit >> 3] |= 1 << (bit & 7)


def _key(hour: int, seq: int) -> bytes:
    return PREFIX + b"%d/%d" % (hour, seq)


class SeenIds:
    """The action ids one raw partition has seen within ``window_ms`` of event time."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.hours: dict[int, _Hour] = {}
        #: Latest event time seen (ms); None before the first action with an id.
        self.latest: int | None = None
        self.dirty: set[int] = set()
        #: ``latest`` as last written to the changelog.
        self._written_latest: int | None = None
        self.counts = {"duplicates": 0, "unchecked": 0}

    def horizon(self) -> int | None:
        """Event times before this are no longer checked."""
        return None if self.latest is None else self.latest - self.window_ms

    def seen(self, event: dict[str, Any]) -> bool:
        """True when the action is a copy of one seen before; otherwise remember it (False).

        Actions without ``action.id``, or without an integral ``date``, are never copies.
        This runs once per action: :func:`action_id`, :func:`fingerprint` and the
        hour's lookup are written out here rather than called.
        """
        action = event.get("action")
        if not isinstance(action, dict):
            return False
        ident = action.get("id")
        if ident is None or ident == "":
            return False
        date = event.get("date")
        if not isinstance(date, int):
            return False
        latest = self.latest
        if latest is not None and date < latest - self.window_ms:
            self.counts["unchecked"] += 1
            return False
        application = event.get("application")
        session = event.get("session")
        app_id = application.get("id") if isinstance(application, dict) else None
        session_id = session.get("id") if isinstance(session, dict) else None
        text = f"{app_id}\x1f{session_id}\x1f{ident}"  # as fingerprint() writes it
        value = _from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
        hour = date // HOUR_MS
        found = self.hours.get(hour)
        if found is None:
            found = self.hours[hour] = _Hour()
        elif value in found.new or (found.runs and found.in_runs(value)):
            self.counts["duplicates"] += 1
            return True
        found.new.add(value)
        self.dirty.add(hour)
        if latest is None or date > latest:
            self.latest = date
        return False

    def __len__(self) -> int:
        return sum(len(hour) for hour in self.hours.values())

    def nbytes(self) -> int:
        """Approximate memory held: 9-10 bytes per flushed id with its filter, about 60 per id in a set."""
        return sum(
            8 * sum(len(run) for run in hour.runs) + len(hour.bits) + 60 * len(hour.new)
            for hour in self.hours.values()
        )

    def changes(self) -> list[tuple[bytes, bytes | None]]:
        """The changelog records since the last call: new ids per hour, compactions, expired hours."""
        records: list[tuple[bytes, bytes | None]] = []
        for hour_id in sorted(self.dirty):
            hour = self.hours.get(hour_id)
            if hour is None or not hour.new:
                continue
            run = array("Q", sorted(hour.new))
            hour.new = set()
            seq = hour.next_seq
            hour.next_seq += 1
            hour.add_run(run, seq)
            if len(hour.runs) > MAX_RUNS:
                # Sorting concatenated sorted runs is close to linear (timsort finds the runs).
                merged = array("Q", sorted(value for part in hour.runs for value in part))
                records.extend((_key(hour_id, old), None) for old in hour.seqs[:-1])
                hour.runs, hour.seqs = [merged], [seq]
                run = merged
            records.append((_key(hour_id, seq), _pack(run)))
        self.dirty.clear()
        if self.latest is not None and self.latest != self._written_latest:
            records.append((LATEST_KEY, b"%d" % self.latest))
            self._written_latest = self.latest
        horizon = self.horizon()
        if horizon is not None:
            for hour_id in sorted(h for h in self.hours if (h + 1) * HOUR_MS <= horizon):
                hour = self.hours.pop(hour_id)
                records.extend((_key(hour_id, seq), None) for seq in hour.seqs)
        return records

    def restore(self, key: bytes, value: bytes | None) -> None:
        """Take one changelog record back (oldest first); tombstones remove their run."""
        if key == LATEST_KEY:
            if value is not None:
                self.latest = self._written_latest = int(value)
            return
        hour_text, _, seq_text = key[len(PREFIX) :].partition(b"/")
        hour_id, seq = int(hour_text), int(seq_text)
        hour = self.hours.get(hour_id)
        if value is None:
            if hour is not None and seq in hour.seqs:
                i = hour.seqs.index(seq)
                del hour.seqs[i], hour.runs[i]
                if not hour.seqs:
                    del self.hours[hour_id]
            return
        if hour is None:
            hour = self.hours[hour_id] = _Hour()
        hour.add_run(_unpack(value), seq)  # a record written again replaces its run (compaction)
        hour.next_seq = max(hour.next_seq, seq + 1)
