"""``lightningstor-admin backup DEST``: an online backup of a data directory
(SQLite metadata and the ``local`` backend's chunks) while servers run.

The stores are opened as the server opens them (:func:`lightningstor.admin._with_stores`:
the same config, the same data dir), only to learn where their files are;
the copy is :func:`lightningstor.backup.take_backup`, on a thread.  This
module parses options and prints.  The backup is itself a data directory:
``twistd lightningstor --data-dir DEST`` serves it (docs/operations.md,
"Backup and restore").

Exit status: 0 when the backup is complete (``DEST/BACKUP.json`` written),
1 when it failed (what it wrote is removed; the message says why), 2 when it
cannot be taken here (another store or backend, ``DEST`` not empty or
inside the chunks directory; nothing written), 130
when interrupted (what it wrote is removed).
"""

from __future__ import annotations

import argparse
import json
import threading
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from lightningstor.admin import Subcommand
    from lightningstor.config import Settings


def _configure(parser: argparse.ArgumentParser) -> None:
    from lightningstor.admin import _configure_data_command

    parser.add_argument("destination", metavar="DEST", help="a new or empty directory to write the backup to")
    _configure_data_command(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _refuse(settings: Settings) -> str | None:
    if settings.metadata.backend != "sqlite" or settings.storage.backend != "local":
        return (
            f"backs up the sqlite metadata store and the local storage backend, not "
            f"{settings.metadata.backend} and {settings.storage.backend}: an etcd store has its own "
            "snapshots (etcdctl snapshot save), and the distributed and rados backends their own copies"
        )
    return None


def backup_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Take the backup; one line per step on ``err``, the report on ``out``."""
    import os

    from twisted.internet import reactor
    from twisted.internet.threads import deferToThread

    from lightningstor.admin import _with_stores
    from lightningstor.backup import BackupFailed, BackupRefused, Sources, take_backup, unusable_destination

    destination = os.path.abspath(args.destination)
    refused = unusable_destination(destination)
    if refused is not None:
        print(f"lightningstor-admin backup: error: {refused}", file=err)
        return 2
    loaded: list[Settings] = []
    stop = threading.Event()

    def refuse(settings: Settings) -> str | None:
        loaded.append(settings)
        return _refuse(settings)

    def log(line: str) -> None:
        print(line, file=err, flush=True)

    async def work(store: Any, backend: Any) -> int:
        sources = Sources(
            database=store.path,
            chunks=os.path.join(backend.base_path, "chunks"),
            master_key=loaded[0].security.master_key_file,
            shard_depth=backend.shard_depth,
        )
        # A stop (SIGINT, SIGTERM) is seen by the copy between two files.
        reactor.addSystemEventTrigger("before", "shutdown", stop.set)  # type: ignore[attr-defined]
        try:
            report = await deferToThread(take_backup, sources, destination, log, stop.is_set)
        except BackupFailed as e:
            print(f"lightningstor-admin backup: error: {e}", file=err)
            return 2 if isinstance(e, BackupRefused) else 1
        if args.json:
            print(json.dumps(report.as_dict(), indent=2, sort_keys=True), file=out)
        else:
            print(
                f"backup in {report.destination}: metadata as of {_utc(report.snapshot_time)}, "
                f"{report.records} records listing chunks, {report.chunks} chunk files ({report.bytes} bytes; "
                f"{report.copied_after} written during the backup, {report.left_out} copied and left out "
                f"as no longer needed){', master key' if report.master_key else ', no master key file'}",
                file=out,
            )
        return 0

    return _with_stores(args, err, work, refuse=refuse)


def _utc(when: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def subcommands() -> dict[str, Subcommand]:
    """``backup`` for :data:`lightningstor.admin.SUBCOMMANDS` (imported lazily
    by ``admin``, so either module can be imported first)."""
    from lightningstor.admin import Subcommand

    return {
        "backup": Subcommand(
            "copy the metadata and chunks of a running server's data directory to a new directory (sqlite + local)",
            _configure,
            backup_command,
        )
    }
