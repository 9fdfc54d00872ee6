"""Deferred sync of an SQLite ledger's commits: commit now, wait for the disk later (group fsync).

An SQLite ledger commits with ``PRAGMA synchronous = FULL``: each commit writes its pages to the
write-ahead log (WAL) and waits for ``fdatasync`` of that file. A writer that takes many small groups
(the callback receiver) can instead commit a group with ``synchronous = NORMAL`` (the same WAL frames,
the same header sync when the log restarts, no wait) and then call :meth:`WalFile.sync`, which
``fdatasync``\\s the same file: every transaction committed before the call is then exactly as durable
as under ``FULL``. Meanwhile the next group's transaction may already run, and one sync covers every
group committed before it. Checkpoints sync the log before copying it into the database under both
settings, so a checkpoint between a commit and its sync loses nothing.

Such writers (the writers of several receivers on one ledger file) also take turns through
:meth:`WalFile.turn`, an ``flock`` on the log file: a writer waiting for its turn wakes the moment
the other's transaction ends, where SQLite's own busy handler would sleep 1, 2, 5, 10... ms between
tries. (The log file, never the database or ``-shm`` file: SQLite holds POSIX locks on those, which
closing any other descriptor of them in this process would drop.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

__all__ = ["WalFile", "deferred_sync"]


@contextlib.contextmanager
def deferred_sync(conn: sa.Connection, *, enabled: bool) -> Iterator[None]:
    """Around a transaction on ``conn`` (SQLite): commit without waiting for the disk when ``enabled``.

    The setting can change only between transactions: it is set on the driver's connection before
    ``BEGIN`` and put back to ``FULL`` after the commit or rollback. Other databases are left alone.
    """
    if not enabled or conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.dbapi_connection
    raw.execute("PRAGMA synchronous = NORMAL")  # type: ignore[union-attr]
    try:
        yield
    finally:
        raw.execute("PRAGMA synchronous = FULL")  # type: ignore[union-attr]


class WalFile:
    """The write-ahead log of an SQLite ledger file: synced on demand, and the writers' turn (module doc).

    Syncing and taking turns each use a descriptor of their own (they run in different threads, and
    closing a descriptor drops the ``flock`` held through it).
    """

    def __init__(self, database: str | Path) -> None:
        self.path = f"{database}-wal"
        self.directory = str(Path(database).parent)
        self.descriptors: dict[str, tuple[int, int]] = {}  # purpose ("sync", "turn") -> (descriptor, inode)

    @property
    def fd(self) -> int | None:
        """The descriptor syncs use (None while closed)."""
        return self.descriptors["sync"][0] if "sync" in self.descriptors else None

    @property
    def inode(self) -> int | None:
        """The inode of the log file syncs use (None while closed)."""
        return self.descriptors["sync"][1] if "sync" in self.descriptors else None

    def _open(self, purpose: str) -> int | None:
        """The log file's descriptor for ``purpose``, reopened when the file was made anew; None when
        there is no log."""
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            self._close(purpose)
            return None
        if purpose in self.descriptors and self.descriptors[purpose][1] == inode:
            return self.descriptors[purpose][0]
        self._close(purpose)
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        self.descriptors[purpose] = (fd, os.fstat(fd).st_ino)
        if purpose == "sync":
            directory = os.open(self.directory, os.O_RDONLY | os.O_CLOEXEC)
            try:  # a log just created must be found after a power loss too
                os.fsync(directory)
            finally:
                os.close(directory)
        return fd

    def sync(self) -> None:
        """Wait until every transaction committed so far on this ledger is on disk (OSError if not).

        No log file means that the last connection checkpointed it into the database (and synced that)
        and removed it: nothing is left to sync.
        """
        fd = self._open("sync")
        if fd is not None:
            os.fdatasync(fd)

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Hold this ledger's writer turn among the writers that take it (blocks until it is free).

        Without a log file yet (no connection has opened the database), SQLite's own locking alone
        serializes the writers.
        """
        fd = self._open("turn")
        if fd is None:
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _close(self, purpose: str) -> None:
        """Close the descriptor for ``purpose``, if open."""
        fd, _ = self.descriptors.pop(purpose, (None, None))
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        """Close the log file (it is reopened when next needed)."""
        for purpose in list(self.descriptors):
            self._close(purpose)
