"""Sketches of the view beyond a memory bound, kept in a local RocksDB database.

The exact summaries of every key stay in memory (a few hundred bytes each);
the sketches, most of a key's size, are kept in memory for the first
``capacity`` keys that have them and in RocksDB for the others. The database
is a cache of what is on Kafka, never a source of truth: each process opens a
fresh one in a folder of its own and removes it on close.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
from pathlib import Path

from rocksdict import Options, Rdict, WriteOptions

log = logging.getLogger(__name__)


class SketchSpill:
    """Sketch bytes by integer handle, in RocksDB."""

    def __init__(self, folder: Path, capacity: int) -> None:
        #: Keys whose sketches stay in memory; beyond it they go to the database.
        self.capacity = capacity
        self.folder = folder / f"view-pid-{os.getpid()}"
        self._db: Rdict | None = None
        self._next = 0
        #: Sketches held in the database now.
        self.held = 0

    @property
    def db(self) -> Rdict:
        """The database, opened on first use."""
        if self._db is None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True)
            self._db = Rdict(str(self.folder), Options(raw_mode=True))
            options = WriteOptions()
            # A cache of Kafka: nothing to recover after a crash. A property at run time,
            # a method in the type stubs.
            setattr(options, "disable_wal", True)  # noqa: B010
            self._db.set_write_options(options)
            atexit.register(self.close)
            log.info("view sketches beyond %d keys are kept in %s", self.capacity, self.folder)
        return self._db

    def put(self, data: bytes, handle: int | None = None) -> int:
        """Store ``data`` (under ``handle`` when it replaces an earlier value); its handle."""
        if handle is None:
            handle = self._next
            self._next += 1
            self.held += 1
        self.db[handle.to_bytes(8, "big")] = data
        return handle

    def get(self, handle: int) -> bytes:
        """The bytes stored under ``handle``."""
        found = self.db[handle.to_bytes(8, "big")]
        if not isinstance(found, bytes):
            raise KeyError(handle)
        return found

    def delete(self, handle: int) -> None:
        """Forget ``handle``."""
        del self.db[handle.to_bytes(8, "big")]
        self.held -= 1

    def close(self) -> None:
        """Close and remove the database."""
        if self._db is not None:
            self._db.close()
            self._db = None
            shutil.rmtree(self.folder, ignore_errors=True)
