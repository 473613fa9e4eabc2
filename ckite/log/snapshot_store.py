"""Where a member keeps the state of its snapshots: files, written and read as streams.

A snapshot is written to a temporary file, fsynced, renamed into place and its directory
fsynced (:meth:`SnapshotWriter.commit`); only then does the storage record its metadata
(:class:`~ckite.log.snapshot.Snapshot`: index, term, configuration, size, CRC-32), so a crash
leaves either no new snapshot or a whole one, never a partial one under a snapshot's name. A
snapshot received from a leader (:class:`IncomingSnapshot`) grows in a temporary file of its
own, each chunk checked to continue it, and is verified against the leader's size and CRC-32
before it is renamed into place.

No method is called under the consensus lock: they all wait on the disk.

Implementations: :class:`FileSnapshotStore` (``<data_dir>/snapshots/``) and
:class:`MemorySnapshotStore` (tests and the simulation: it outlives the member that used it,
as a :class:`~ckite.log.memory_storage.MemoryStorage` does).
"""
from __future__ import annotations

import io
import logging
import os
import threading
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ckite.errors import StorageError
from ckite.log.snapshot import Snapshot

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

logger = logging.getLogger(__name__)

#: How much of a file is read at a time to check it.
READ_CHUNK = 1024 * 1024


class _Checksummed(io.RawIOBase):
    """A writable file object that counts and checksums what goes through it."""

    def __init__(self, file: BinaryIO) -> None:
        super().__init__()
        self._file = file
        self.size = 0
        self.checksum = 0

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data)
        self._file.write(view)
        self.size += view.nbytes
        self.checksum = zlib.crc32(view, self.checksum)
        return view.nbytes


class SnapshotWriter:
    """The state of a new snapshot, being written: :attr:`file` takes its bytes (buffered), then
    :meth:`commit` makes it durable and returns its metadata, or :meth:`abort` drops it."""

    def __init__(self, store: SnapshotStore, last_index: int, last_term: int, configuration: bytes,
                 target: BinaryIO) -> None:
        self._store = store
        self._meta = (last_index, last_term, configuration)
        self._target = target
        self._counted = _Checksummed(target)
        self.file: BinaryIO = io.BufferedWriter(self._counted, READ_CHUNK)

    def commit(self) -> Snapshot:
        self.file.flush()
        snapshot = Snapshot(*self._meta, self._counted.size, self._counted.checksum)
        self._store._commit(self._target, snapshot)
        return snapshot

    def abort(self) -> None:
        self._store._abort(self._target)


class IncomingSnapshot:
    """A leader's snapshot arriving in chunks, in order; :meth:`finish` once the last one is in."""

    def __init__(self, store: SnapshotStore, snapshot: Snapshot, target: BinaryIO) -> None:
        self.snapshot = snapshot
        self._store = store
        self._target = target
        self.received = 0
        self._checksum = 0

    def append(self, offset: int, data: bytes) -> bool:
        """Add the chunk at ``offset``; False (nothing written) when it does not continue the file."""
        if offset != self.received:
            return False
        self._target.write(data)
        self.received += len(data)
        self._checksum = zlib.crc32(data, self._checksum)
        return True

    def finish(self) -> None:
        """Check the whole state against the leader's size and CRC-32 and make it durable;
        raises StorageError (the file is dropped) when it does not match."""
        expected = self.snapshot
        if (self.received, self._checksum) != (expected.size, expected.checksum):
            self.abort()
            raise StorageError(f"snapshot {expected.name} arrived damaged: {self.received} bytes with CRC-32 "
                               f"{self._checksum:#010x}, expected {expected.size} with {expected.checksum:#010x}")
        self._store._commit(self._target, expected)

    def abort(self) -> None:
        self._store._abort(self._target)


class SnapshotStore(ABC):
    """The snapshots' states of one member, by :attr:`Snapshot.name`."""

    def __init__(self) -> None:
        self._pins: dict[str, int] = {}
        self._pins_lock = threading.Lock()

    def create(self, last_index: int, last_term: int, configuration: bytes) -> SnapshotWriter:
        snapshot_name = Snapshot(last_index, last_term, configuration, 0, 0).name
        return SnapshotWriter(self, last_index, last_term, configuration, self._begin(snapshot_name))

    def receive(self, snapshot: Snapshot) -> IncomingSnapshot:
        return IncomingSnapshot(self, snapshot, self._begin(snapshot.name))

    def verify(self, snapshot: Snapshot) -> bool:
        """Whether the stored state is whole: its size and CRC-32 match the metadata."""
        try:
            with self.open(snapshot) as reader:
                size, checksum = 0, 0
                while chunk := reader.read(READ_CHUNK):
                    size += len(chunk)
                    checksum = zlib.crc32(chunk, checksum)
        except (OSError, StorageError):
            return False
        return (size, checksum) == (snapshot.size, snapshot.checksum)

    def read_chunk(self, snapshot: Snapshot, offset: int, length: int) -> bytes:
        """``length`` bytes of the state from ``offset`` (fewer at its end)."""
        with self.open(snapshot) as reader:
            reader.seek(offset)
            return reader.read(length)

    def pin(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` whatever :meth:`retain` is told (a transfer to a follower reads it)."""
        with self._pins_lock:
            self._pins[snapshot.name] = self._pins.get(snapshot.name, 0) + 1

    def unpin(self, snapshot: Snapshot) -> None:
        with self._pins_lock:
            count = self._pins.get(snapshot.name, 0) - 1
            if count > 0:
                self._pins[snapshot.name] = count
            else:
                self._pins.pop(snapshot.name, None)

    def retain(self, keep: Iterable[Snapshot]) -> None:
        """Delete every state but ``keep``'s, the pinned ones, and those being written."""
        with self._pins_lock:
            kept = {snapshot.name for snapshot in keep} | set(self._pins)
        for name in self._names():
            if name not in kept:
                self._delete(name)

    @abstractmethod
    def open(self, snapshot: Snapshot) -> BinaryIO:
        """A reader of the state (raises StorageError when it is missing)."""

    @abstractmethod
    def _begin(self, name: str) -> BinaryIO: ...

    @abstractmethod
    def _commit(self, target: BinaryIO, snapshot: Snapshot) -> None: ...

    @abstractmethod
    def _abort(self, target: BinaryIO) -> None: ...

    @abstractmethod
    def _names(self) -> list[str]:
        """Every complete state stored."""

    @abstractmethod
    def _delete(self, name: str) -> None: ...


class FileSnapshotStore(SnapshotStore):
    """``<directory>/<name>.snap`` files; a file still being written is ``<name>.partial``."""

    SUFFIX = ".snap"
    PARTIAL = ".partial"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        super().__init__()
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for leftover in self.directory.glob(f"*{self.PARTIAL}"):
                leftover.unlink()   # a write or a transfer that a crash interrupted: start again cleanly
        except OSError as exc:
            raise StorageError(f"{self.directory}: cannot prepare the snapshot directory: {exc}") from exc

    def path(self, snapshot: Snapshot) -> Path:
        return self.directory / f"{snapshot.name}{self.SUFFIX}"

    def open(self, snapshot: Snapshot) -> BinaryIO:
        try:
            return open(self.path(snapshot), "rb")
        except OSError as exc:
            raise StorageError(f"snapshot {snapshot.name}: {exc}") from exc

    def _begin(self, name: str) -> BinaryIO:
        try:
            return open(self.directory / f"{name}.{threading.get_ident()}{self.PARTIAL}", "wb")
        except OSError as exc:
            raise StorageError(f"{self.directory}: cannot write a snapshot: {exc}") from exc

    def _commit(self, target: BinaryIO, snapshot: Snapshot) -> None:
        try:
            target.flush()
            os.fsync(target.fileno())
            target.close()
            os.replace(target.name, self.path(snapshot))
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)   # the rename itself survives a crash
            finally:
                os.close(directory)
        except OSError as exc:
            self._abort(target)
            raise StorageError(f"snapshot {snapshot.name}: cannot make it durable: {exc}") from exc

    def _abort(self, target: BinaryIO) -> None:
        target.close()
        Path(target.name).unlink(missing_ok=True)

    def _names(self) -> list[str]:
        return [path.name[:-len(self.SUFFIX)] for path in self.directory.glob(f"*{self.SUFFIX}")]

    def _delete(self, name: str) -> None:
        try:
            (self.directory / f"{name}{self.SUFFIX}").unlink(missing_ok=True)
        except OSError as exc:   # space not given back yet; the next retain() tries again
            logger.warning("%s: cannot delete snapshot %s: %s", self.directory, name, exc)


class _MemoryTarget(io.BytesIO):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class MemorySnapshotStore(SnapshotStore):
    """States in memory; "durable" means it outlives the member that wrote it."""

    def __init__(self) -> None:
        super().__init__()
        self._states: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def open(self, snapshot: Snapshot) -> BinaryIO:
        with self._lock:
            state = self._states.get(snapshot.name)
        if state is None:
            raise StorageError(f"snapshot {snapshot.name} is not stored")
        return io.BytesIO(state)

    def put(self, snapshot: Snapshot, state: bytes) -> None:
        """Store a state as it is (tests: a damaged one, a snapshot written by an older member)."""
        with self._lock:
            self._states[snapshot.name] = state

    def _begin(self, name: str) -> BinaryIO:
        return _MemoryTarget(name)

    def _commit(self, target: BinaryIO, snapshot: Snapshot) -> None:
        self.put(snapshot, target.getvalue())   # type: ignore[attr-defined]

    def _abort(self, target: BinaryIO) -> None:
        target.close()

    def _names(self) -> list[str]:
        with self._lock:
            return list(self._states)

    def _delete(self, name: str) -> None:
        with self._lock:
            self._states.pop(name, None)
