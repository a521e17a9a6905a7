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
   copied now; they are new, and a freed chunk is deleted only
   ``storage.free_delay_seconds`` after the snapshot at the earliest, far
   longer than this step takes.  A chunk the snapshot's records list that is
   gone from the source fails the backup (the source lost it: ``scrub``).
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

from lightningstor import __version__
from lightningstor.core import keys, records
from lightningstor.interfaces.metadata import prefix_end

MARKER = "BACKUP.json"
"""Written last: its presence says the backup is complete."""

_DIR_MODE = 0o700
_FILE_MODE = 0o600
_COPY_BLOCK = 1 << 20

# Record key spaces whose values list chunks (as lightningstor.core.scrub's
# CHUNK_HOLDERS; read here from the snapshot's own table).
_CHUNK_HOLDERS = (keys.OBJECTS, keys.VERSIONS, keys.PARTS, keys.MANIFESTS)


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


def unusable_destination(destination: str) -> str | None:
    """Why a backup cannot go into ``destination`` (it must not exist, or
    be an empty directory); None if it can."""
    if not os.path.exists(destination):
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
    exist or is empty); blocking, for a thread or a command-line process.

    Raises :class:`BackupFailed` (having removed what it wrote) if a chunk
    the snapshot lists is missing from the source, a copy fails, or
    ``stopping()`` answers yes (asked between files)."""
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


def _take(
    sources: Sources, destination: str, report: BackupReport, log: Callable[[str], None], stopping: Callable[[], bool]
) -> None:
    def check_stop() -> None:
        if stopping():
            raise BackupFailed("interrupted; no backup was kept")

    chunks_to = os.path.join(destination, "data", "chunks")
    os.makedirs(chunks_to, _DIR_MODE)
    os.chmod(os.path.join(destination, "data"), _DIR_MODE)

    log(f"copying the chunk files under {sources.chunks}")
    copied: dict[str, str] = {}  # chunk id -> path relative to the chunks directory
    for relative in _chunk_files(sources.chunks):
        check_stop()
        try:
            report.bytes += _copy_file(os.path.join(sources.chunks, relative), os.path.join(chunks_to, relative))
        except FileNotFoundError:
            continue  # deleted since the walk listed it: freed, so no snapshot to come needs it
        copied[os.path.basename(relative)] = relative
    report.copied_ahead = len(copied)

    database_to = os.path.join(destination, "metadata.db")
    log(f"copying the metadata database {sources.database}")
    _snapshot(sources.database, database_to)
    report.snapshot_time = time.time()

    referenced, indexed, report.records = _needed_chunks(database_to)
    wanted = referenced | indexed
    late = wanted - copied.keys()
    if late:
        log(f"copying {len(late)} chunk files written during the copy")
        for relative in _chunk_files(sources.chunks):
            chunk_id = os.path.basename(relative)
            if chunk_id not in late or chunk_id in copied:
                continue
            check_stop()
            try:
                report.bytes += _copy_file(os.path.join(sources.chunks, relative), os.path.join(chunks_to, relative))
            except FileNotFoundError:
                continue
            copied[chunk_id] = relative
            report.copied_after += 1
    missing = referenced - copied.keys()
    if missing:
        shown = ", ".join(sorted(missing)[:5])
        raise BackupFailed(
            f"{len(missing)} chunks that records of the snapshot list are missing from {sources.chunks} "
            f"(e.g. {shown}): the source has lost them (run lightningstor-admin scrub); no backup was kept"
        )
    # Index hints of writes in flight at the snapshot whose chunks never came
    # (the write failed): nothing lists them, and the restored collector
    # drops such hints.
    report.unindexed_missing = sorted(indexed - copied.keys())

    for chunk_id in sorted(copied.keys() - wanted):
        path = os.path.join(chunks_to, copied.pop(chunk_id))
        report.bytes -= os.path.getsize(path)
        os.unlink(path)
        report.left_out += 1
    report.chunks = len(copied)

    if os.path.exists(sources.master_key):
        _copy_file(sources.master_key, os.path.join(destination, "master.key"))
        report.master_key = True

    log("flushing the backup to disk")
    os.sync()
    marker = os.path.join(destination, MARKER)
    with open(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE), "w") as f:
        json.dump(report.as_dict(), f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(destination)


def _prepare(destination: str) -> bool:
    """Create ``destination`` (private), or accept it empty; whether it was
    created.  BackupFailed for any other (nothing in it is touched)."""
    try:
        os.makedirs(destination, _DIR_MODE)
    except FileExistsError:
        refused = unusable_destination(destination)
        if refused is not None:
            raise BackupRefused(refused) from None
        os.chmod(destination, _DIR_MODE)
        return False
    return True


def _chunk_files(chunks: str) -> Iterator[str]:
    """Paths (relative to ``chunks``) of the chunk files under it, in a
    stable order; a missing directory has none."""
    for directory, subdirs, files in os.walk(chunks):
        subdirs.sort()
        for name in sorted(files):
            if _is_chunk_id(name):
                yield os.path.relpath(os.path.join(directory, name), chunks)


def _is_chunk_id(name: str) -> bool:
    # The local backend's chunk ids: [0-9a-f][0-9a-f-]{0,127}.
    return 0 < len(name) <= 128 and name[0] in "0123456789abcdef" and all(c in "0123456789abcdef-" for c in name)


def _copy_file(source: str, target: str) -> int:
    """Copy ``source`` to the new file ``target`` (private, its directories
    created private); its size.  FileNotFoundError if ``source`` is gone."""
    with open(source, "rb") as src:
        os.makedirs(os.path.dirname(target), _DIR_MODE, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
        size = 0
        with open(fd, "wb") as dst:
            while block := src.read(_COPY_BLOCK):
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
        for prefix in _CHUNK_HOLDERS:
            for (value,) in conn.execute(
                "SELECT value FROM kv WHERE key >= ? AND key < ?", (prefix, prefix_end(prefix))
            ):
                chunks = records.decode_chunks(records.record_fields(value).get("chunks", ()))
                if chunks:
                    holders += 1
                    referenced.update(ref.chunk_id for ref in chunks)
        start = keys.CHUNKS
        for (key,) in conn.execute("SELECT key FROM kv WHERE key >= ? AND key < ?", (start, prefix_end(start))):
            indexed.add(bytes(key)[len(start):].decode())
    finally:
        conn.close()
    return referenced, indexed, holders


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
