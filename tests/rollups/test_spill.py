"""SpillMap and Spill: dicts whose coldest entries move to RocksDB beyond a shared budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.rollups.spill import Spill, spill_folder


def _maps(tmp_path: Path, capacity: int) -> tuple[Spill, list]:
    spill = Spill(tmp_path / "spill" / "pid-1", capacity)
    maps = [
        spill.new_map(lambda k: k.to_bytes(8, "big"), str.encode, bytes.decode, lambda k: k) for _ in range(2)
    ]
    return spill, maps


def test_the_coldest_entries_of_all_maps_spill_and_come_back(tmp_path: Path) -> None:
    spill, (a, b) = _maps(tmp_path, capacity=10)
    try:
        for k in range(8):
            a[k] = f"a{k}"
            b[k + 100] = f"b{k + 100}"
        assert spill.balance() == 16 - 8  # down to 80 % of the capacity
        # The lowest keys (coldness = key) of both maps together went: all of a's, none of b's.
        assert set(a.cold) == set(range(8)) and not b.cold
        assert len(a) == 8 and 3 in a and list(a) == list(range(8))
        assert a[3] == "a3" and 3 in a.hot and 3 not in a.cold  # read back, in memory again
        assert a.get(42) is None and a.pop(42, "none") == "none"
        with pytest.raises(KeyError):
            a[42]
        assert a.pop(4) == "a4" and 4 not in a
        a.discard(5)
        a[6] = "new"  # replaces the spilled value
        assert a[6] == "new"
        assert spill.counts == {"spilled": 8, "unspilled": 2}  # a[3] and pop(4) read back
        assert spill.balance() == 0  # under the capacity: nothing to do
        spill.forget(a)  # a partition given away: its spilled entries go too
        assert len(list(spill.db.keys())) == 0
        assert spill.maps == [b]
    finally:
        spill.close()
    assert not (tmp_path / "spill" / "pid-1").exists()


def test_capacity_zero_never_spills(tmp_path: Path) -> None:
    spill, (a, _) = _maps(tmp_path, capacity=0)
    for k in range(1000):
        a[k] = "x"
    assert spill.balance() == 0 and not a.cold
    assert not (tmp_path / "spill").exists()  # no database was ever opened


def test_folders_of_processes_that_are_gone_are_removed(tmp_path: Path) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / "spill" / f"pid-{gone.stdout.strip()}"
    stale.mkdir(parents=True)
    alive = tmp_path / "spill" / f"pid-{os.getppid()}"
    alive.mkdir()
    spill = Spill(spill_folder(tmp_path), capacity=1)
    try:
        m = spill.new_map(str.encode, str.encode, bytes.decode, len)
        m["a"], m["bb"] = "1", "2"
        assert spill.balance() == 2
        assert not stale.exists() and alive.exists()
        assert spill_folder(tmp_path).is_dir()
    finally:
        spill.close()


def test_an_entry_that_fails_to_encode_stays_in_memory(tmp_path: Path) -> None:
    spill = Spill(tmp_path / "spill" / "pid-1", capacity=1)

    def dump(value: str) -> bytes:
        if value == "bad":
            raise ValueError("cannot encode")
        return value.encode()

    m = spill.new_map(str.encode, dump, bytes.decode, len)
    m["a"], m["bbb"] = "bad", "fine"
    try:
        with pytest.raises(ValueError):
            spill.balance()
        assert m.hot == {"a": "bad", "bbb": "fine"} and not m.cold
    finally:
        spill.close()
