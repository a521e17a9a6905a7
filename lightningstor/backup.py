"""Online backup of a data directory: the SQLite metadata store and the
``local`` backend's chunk files, taken while servers run.

A copy of ``metadata.db`` and ``data/`` made with ``cp`` while a server
writes is not a backup: the database file alone misses what its ``-wal``
holds, the two are not copied at one instant, and a chunk that a record of
the copied database lists may have been written after its directory was
copied.  :func:`take_backup` gives a directory that a server can be started
on (``--data-dir``) and that holds every object as the metadata stood at one
instant, the *snapshot*:

1. Every chunk file there is copied first (the bulk of the bytes, and the
   long part: a chunk is never changed once written, so a copy taken at any
   time is good).
2. The database is copied with SQLite's online backup API, which reads one
   consistent state while writers go on (WAL readers block nobody).
3. The snapshot's records say which chunks it needs: those of every object,
   version, multipart part and paged chunk list, and every chunk the chunk
   index names (a hint of a write still in flight at the snapshot, which the
   restored server's collector settles).  Chunks written after step 1 are
   opened at once and copied: they are new, and a chunk freed after the
   snapshot is deleted ``storage.free_delay_seconds`` later, while an open
   file stays readable.  With a delay of 0 (or a server's stop, which
   deletes what waits) one can go before it is opened: then the snapshot is
   taken again, up to :data:`SNAPSHOT_ATTEMPTS` times.  Chunks still missing
   fail the backup (the source lost them: ``scrub``).
4. What step 1 copied that the snapshot does not need (deleted or
   overwritten meanwhile) is removed, so the backup holds exactly its
   objects' chunks.
5. The master key file is copied after the snapshot: it decrypts the
   snapshot's credentials and SSE-S3 data keys, and a rotation adds its new
   key line before any key is wrapped with it.
6. Everything is flushed to disk, then ``BACKUP.json`` is written and
   flushed: a directory without it is not a complete backup.

Only the SQLite store and the ``local`` backend are files this process can
copy; etcd has its own snapshots (``etcdctl snapshot save``) and the
``distributed`` and RADOS backends keep their own copies.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import BinaryIO

from lightningstor import __version__
from lightningstor.core import keys
from lightningstor.core.scrub import CHUNK_HOLDERS, chunk_refs
from lightningstor.interfaces.metadata import prefix_end
from lightningstor.storage.local import chunk_relpath, fsync_dir

MARKER = "BACKUP.json"
"""Written last: its presence says the backup is complete."""

_DIR_MODE = 0o700
_FILE_MODE = 0o600
_COPY_BLOCK = 1 << 20



class BackupFailed(Exception):
    """The backup could not be completed; the message says why.  What was
    written of it has been removed."""


class BackupRefused(BackupFailed):
    """The destination cannot take a backup (not empty, not a directory,
    inside the chunks directory); nothing was written."""


@dataclass
class BackupReport:
    """What :func:`take_backup` copied."""

    destination: str
    snapshot_time: float = 0.0  # time.time() once the database copy was taken
    source_version: str = __version__
    records: int = 0  # records of the snapshot that list chunks
    chunks: int = 0  # chunk files in the backup
    bytes: int = 0  # their total size
    copied_ahead: int = 0  # of them, copied before the snapshot
    copied_after: int = 0  # copied after it (written meanwhile)
    left_out: int = 0  # copied ahead, then removed: the snapshot does not need them
    master_key: bool = False
    unindexed_missing: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Sources:
    """Where the data directory's parts are (the server's own settings)."""

    database: str  # the SQLite file
    chunks: str  # the local backend's chunks directory
    master_key: str  # the master key file (may not exist)
    shard_depth: int = 2  # the local backend's (storage.shard_depth)


def unusable_destination(destination: str) -> str | None:
    """Why a backup cannot go into ``destination`` (it must not exist, or
    be an empty directory); None if it can."""
    if not os.path.exists(destination):
        if os.path.lexists(destination):
            return f"{destination} is a symbolic link to nothing"
        return None
    if not os.path.isdir(destination):
        return f"{destination} exists and is not a directory"
    if os.listdir(destination):
        return f"{destination} is not empty: a backup goes into a new or empty directory"
    return None


def take_backup(
    sources: Sources,
    destination: str,
    log: Callable[[str], None] = lambda line: None,
    stopping: Callable[[], bool] = lambda: False,
) -> BackupReport:
    """Back up ``sources`` into ``destination`` (a directory that does not
    exist or is empty; its parent must exist); blocking, for a thread or a
    command-line process.

    Raises :class:`BackupRefused` (nothing written) for a destination that
    cannot take it, and :class:`BackupFailed` (having removed what it wrote)
    if chunks the snapshot lists stay missing from the source, a copy fails,
    or ``stopping()`` answers yes (asked between files and steps, and last
    before ``BACKUP.json``)."""
    inside = os.path.realpath(sources.chunks)
    if os.path.commonpath([os.path.realpath(destination), inside]) == inside:
        raise BackupRefused(f"{destination} is inside the chunks directory it would copy ({sources.chunks})")
    created = _prepare(destination)
    report = BackupReport(destination=destination)
    try:
        _take(sources, destination, report, log, stopping)
    except OSError as e:
        _remove_written(destination, created)
        raise BackupFailed(f"{e.filename or destination}: {e.strerror or e}") from e
    except BaseException:
        _remove_written(destination, created)
        raise
    return report


OPEN_AT_ONCE = 256
"""Chunk files written during the first copy that are opened together (well
under the usual limit of 1,024 open files)."""

SNAPSHOT_ATTEMPTS = 5
"""Snapshots taken before a backup gives up on chunks its snapshot lists
that are gone from the source.  A chunk freed just after a snapshot is
deleted at once with ``storage.free_delay_seconds = 0`` (or by a server's
stop, which deletes what waits), before the snapshot's new chunks are
opened: the next snapshot no longer lists it."""


def _take(
    sources: Sources, destination: str, report: BackupReport, log: Callable[[str], None], stopping: Callable[[], bool]
) -> None:
    def check_stop() -> None:
        if stopping():
            raise BackupFailed("interrupted; no backup was kept")

    chunks_to = os.path.join(destination, "data", "chunks")
    _make_dirs(chunks_to, destination)

    log(f"copying the chunk files under {sources.chunks}")
    copied: set[str] = set()
    for chunk_id in _chunk_files(sources.chunks, sources.shard_depth):
        check_stop()
        relative = chunk_relpath(chunk_id, sources.shard_depth)
        try:
            with open(os.path.join(sources.chunks, relative), "rb") as present:
                report.bytes += _copy_file(present, os.path.join(chunks_to, relative), destination)
        except FileNotFoundError:
            continue  # deleted since the walk listed it: freed, so no snapshot to come needs it
        copied.add(chunk_id)
    report.copied_ahead = len(copied)

    database_to = os.path.join(destination, "metadata.db")
    for attempt in range(1, SNAPSHOT_ATTEMPTS + 1):
        check_stop()
        if os.path.exists(database_to):
            os.unlink(database_to)
        log(f"copying the metadata database {sources.database}")
        _snapshot(sources.database, database_to)
        report.snapshot_time = time.time()
        referenced, indexed, report.records = _needed_chunks(database_to)
        wanted = referenced | indexed
        late = sorted(wanted - copied)
        if late:
            log(f"copying {len(late)} chunk files written during the copy")
        for start in range(0, len(late), OPEN_AT_ONCE):
            # Opened a batch at once, read after: an open file stays readable
            # when the server deletes it, so only the moments up to its
            # opening can lose one.  In batches: a long first copy of a busy
            # store leaves more new chunks than a process may hold open.
            batch = _open_all(sources, late[start : start + OPEN_AT_ONCE])
            try:
                for chunk_id, opened in batch:
                    check_stop()
                    target = os.path.join(chunks_to, chunk_relpath(chunk_id, sources.shard_depth))
                    report.bytes += _copy_file(opened, target, destination)
                    copied.add(chunk_id)
                    report.copied_after += 1
            finally:
                for _, opened in batch:
                    opened.close()
        missing = referenced - copied
        if not missing:
            break
        log(f"{len(missing)} chunks the snapshot lists are gone from the source; taking it again ({attempt})")
    else:
        shown = ", ".join(sorted(missing)[:5])
        raise BackupFailed(
            f"{len(missing)} chunks that records of the snapshot list are missing from {sources.chunks} "
            f"(e.g. {shown}) in {SNAPSHOT_ATTEMPTS} snapshots in a row: lost by the source (run "
            "lightningstor-admin scrub on it), or freed and deleted at once after each snapshot "
            "(storage.free_delay_seconds = 0 under steady overwrites); no backup was kept"
        )
    # Index hints of writes in flight at the snapshot whose chunks never came
    # (the write failed): nothing lists them, and the restored collector
    # drops such hints.
    report.unindexed_missing = sorted(indexed - copied)

    for chunk_id in sorted(copied - wanted):
        path = os.path.join(chunks_to, chunk_relpath(chunk_id, sources.shard_depth))
        report.bytes -= os.path.getsize(path)
        os.unlink(path)
        copied.discard(chunk_id)
        report.left_out += 1
    report.chunks = len(copied)

    if os.path.exists(sources.master_key):
        with open(sources.master_key, "rb") as key:
            _copy_file(key, os.path.join(destination, "master.key"), destination)
        report.master_key = True

    check_stop()
    log("flushing the backup to disk")
    os.sync()
    check_stop()  # the last moment the backup can still be given up
    marker = os.path.join(destination, MARKER)
    with open(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE), "w") as f:
        json.dump(report.as_dict(), f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(destination)


def _open_all(sources: Sources, chunk_ids: list[str]) -> list[tuple[str, BinaryIO]]:
    """The chunk files of ``chunk_ids`` that are there, opened for reading."""
    found: list[tuple[str, BinaryIO]] = []
    for chunk_id in chunk_ids:
        path = os.path.join(sources.chunks, chunk_relpath(chunk_id, sources.shard_depth))
        try:
            found.append((chunk_id, open(path, "rb")))
        except FileNotFoundError:
            continue
    return found


def _prepare(destination: str) -> bool:
    """Create ``destination`` (private; its parent must exist), or accept it
    empty; whether it was created.  BackupRefused for any other (nothing in
    it is touched)."""
    try:
        os.mkdir(destination, _DIR_MODE)
    except FileNotFoundError:
        raise BackupRefused(f"{os.path.dirname(destination) or '.'} does not exist (nor does {destination})") from None
    except FileExistsError:
        refused = unusable_destination(destination)
        if refused is not None:
            raise BackupRefused(refused) from None
        return False
    return True


def _chunk_files(chunks: str, shard_depth: int) -> Iterator[str]:
    """The ids of the chunk files under ``chunks`` (files named by a chunk
    id where the local backend puts that id), in a stable order; a missing
    directory has none."""
    for directory, subdirs, files in os.walk(chunks):
        subdirs.sort()
        for name in sorted(files):
            try:
                where = chunk_relpath(name, shard_depth)
            except ValueError:
                continue
            if os.path.join(chunks, where) == os.path.join(directory, name):
                yield name


def _make_dirs(path: str, root: str) -> None:
    """Create ``path`` and the directories between it and ``root`` that are
    missing, each private (``os.makedirs`` gives the new parents the umask's
    mode)."""
    missing = []
    while path != root and not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, _DIR_MODE)
        except FileExistsError:
            pass


def _copy_file(source: BinaryIO, target: str, root: str) -> int:
    """Copy the open file ``source`` to the new file ``target`` (private,
    its missing directories below ``root`` created private); its size."""
    _make_dirs(os.path.dirname(target), root)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
    size = 0
    with open(fd, "wb") as dst:
        while block := source.read(_COPY_BLOCK):
            dst.write(block)
            size += len(block)
    return size


def _snapshot(database: str, target: str) -> None:
    """Copy the SQLite database ``database`` to ``target`` as one
    consistent state (the online backup API, in a single step: it reads
    under one read transaction, which in WAL mode blocks no writer)."""
    if not os.path.exists(database):
        raise BackupFailed(f"no metadata database at {database}")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    os.close(fd)
    source = sqlite3.connect(database, timeout=60)
    try:
        copy = sqlite3.connect(target)
        try:
            source.backup(copy)
            # The copy is read, then opened by a server: the same journal
            # mode as the source's (WAL), but nothing pending in a -wal.
            copy.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            copy.close()
    finally:
        source.close()


def _needed_chunks(database: str) -> tuple[set[str], set[str], int]:
    """(chunk ids the snapshot's records list, chunk ids its index names,
    how many records list chunks), read from the copy."""
    referenced: set[str] = set()
    indexed: set[str] = set()
    holders = 0
    conn = sqlite3.connect(database)
    try:
        for prefix in CHUNK_HOLDERS:  # read from the snapshot's own table
            for (value,) in conn.execute(
                "SELECT value FROM kv WHERE key >= ? AND key < ?", (prefix, prefix_end(prefix))
            ):
                chunks = chunk_refs(value)
                if chunks:
                    holders += 1
                    referenced.update(ref.chunk_id for ref in chunks)
        start = keys.CHUNKS
        for (key,) in conn.execute("SELECT key FROM kv WHERE key >= ? AND key < ?", (start, prefix_end(start))):
            indexed.add(bytes(key)[len(start):].decode())
    finally:
        conn.close()
    return referenced, indexed, holders


def _remove_written(destination: str, created: bool) -> None:
    """Remove what a failed backup wrote: ``destination`` itself if it was
    created, else what it now holds (it was empty)."""
    if created:
        shutil.rmtree(destination, ignore_errors=True)
        return
    for name in os.listdir(destination):
        path = os.path.join(destination, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
