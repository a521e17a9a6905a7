"""``lightningstor-admin sse rewrap``: the last step of a master key rotation
for SSE-S3 data (docs/operations.md, "The master key protects object data").

It opens the server's own metadata store as ``key reencrypt`` does
(:func:`lightningstor.admin._with_stores`: the same config, the same data
dir, SQLite or etcd alike) and runs
:func:`lightningstor.core.sse_rewrap.rewrap_all` with the server's master key
file, which it reads but never creates: a missing file means a wrong
``--config``/``--data-dir``, and a new key would open nothing.  It may run
while servers run (every write is a compare-and-swap).  This module parses
options and prints; the walk is in the core.

Exit status: 0 when every stored data key now opens with the first line of
the file (the older lines may go), 3 when some key opens with no line or the
walks did not settle (the report says which; nothing else was held back),
2 when the master key file is missing or damaged, 1 when the stores could
not be opened.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from lightningstor.admin import Subcommand
    from lightningstor.core.sse_rewrap import RewrapReport

REFUSED = 2
PROBLEMS = 3


def read_master_key(path: str) -> bytes:
    """The master key file's content, validated; ValueError naming the
    problem if it is missing or damaged (never created here)."""
    from lightningstor.core.credentials import read_master_key_file

    try:
        found = read_master_key_file(path)
    except OSError as e:
        raise ValueError(f"cannot read the master key file {path}: {e.strerror}") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if found is None:
        raise ValueError(f"no master key file at {path}: is [security] master_key_file the server's?")
    return found


def print_report(report: RewrapReport, out: TextIO, as_json: bool) -> int:
    """Print a :class:`RewrapReport`; the exit status it calls for."""
    status = 0 if report.ok else PROBLEMS
    if as_json:
        print(json.dumps(report.as_dict(), indent=2, sort_keys=True), file=out)
        return status
    print(f"checked {report.checked} wrapped data keys in {report.records} records "
          f"({report.passes} walk{'s' if report.passes != 1 else ''}):", file=out)
    print(f"  rewrapped:          {report.rewrapped}", file=out)
    print(f"  already current:    {report.current}", file=out)
    print(f"  unreadable:         {report.unreadable}", file=out)
    print(f"  conflicts retried:  {report.conflicts}", file=out)
    print(f"  SSE-C (skipped):    {report.customer}", file=out)
    print(f"  unencrypted:        {report.plain}", file=out)
    print(f"  deleted meanwhile:  {report.gone}", file=out)
    if report.busy:
        print(f"  kept changing:      {report.busy}", file=out)
    for u in report.unreadable_keys:
        print(f"unreadable: {u.record_key.decode('utf-8', 'replace')} (object {u.object_key!r}): {u.reason}",
              file=out)
    if report.unreadable > len(report.unreadable_keys):
        print(f"... and {report.unreadable - len(report.unreadable_keys)} more unreadable", file=out)
    if report.ok:
        print("every data key opens with the first line of the master key file: "
              "the other lines may be removed", file=out)
    elif not report.settled:
        print(f"still rewrapping after {report.passes} walks: is every server running with the new first line? "
              "Keep the old lines and run again", file=out)
    else:
        print("keep the old lines of the master key file until these are resolved", file=out)
    return status


def rewrap(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``sse rewrap``: read the master key file, then open the stores and walk."""
    from lightningstor.admin import _with_stores
    from lightningstor.config import ConfigProblems, load_settings
    from lightningstor.core.sse_rewrap import rewrap_all
    from lightningstor.errors import ConfigError

    try:
        settings = load_settings(env=os.environ, cli={"config": args.config, "data_dir": args.data_dir})
    except (ConfigProblems, ConfigError):
        settings = None  # _with_stores reports the problems as every command does
    master_key = b""
    if settings is not None:
        # Before the stores are opened: a wrong --data-dir creates nothing.
        try:
            master_key = read_master_key(settings.security.master_key_file)
        except ValueError as e:
            print(f"error: {e}", file=err)
            return REFUSED

    async def work(store: Any, backend: Any) -> int:
        report: RewrapReport = await rewrap_all(store, master_key, max_passes=args.max_passes)
        return print_report(report, out, args.json)

    return _with_stores(args, err, work)


def _configure(parser: argparse.ArgumentParser) -> None:
    group = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    help_ = ("wrap every stored SSE-S3 data key again under the master key file's first line "
             "(master key rotation; safe while servers run)")
    sub = group.add_parser("rewrap", help=help_, description=help_)
    sub.add_argument("--max-passes", type=int, default=5, metavar="N",
                     help="walk again while a walk rewrapped something, at most N walks (default 5)")
    sub.add_argument("--config", default=None, help="the server's TOML configuration file")
    sub.add_argument("--data-dir", default=None, help="the server's data directory (overrides the file)")
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.set_defaults(sse_handler=rewrap)


def _dispatch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.max_passes < 1:
        print(f"error: --max-passes {args.max_passes}: at least 1", file=err)
        return REFUSED
    return int(args.sse_handler(args, out, err))


def subcommands() -> dict[str, Subcommand]:
    """``sse`` for :data:`lightningstor.admin.SUBCOMMANDS` (imported lazily
    by ``admin``, so either module can be imported first)."""
    from lightningstor.admin import Subcommand

    return {"sse": Subcommand("server-side encryption maintenance: rewrap data keys after a master key rotation",
                              _configure, _dispatch)}
