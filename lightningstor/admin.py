"""``lightningstor-admin``: operator commands that do not need a running server.

Subcommands live in :data:`SUBCOMMANDS`, a table of name -> :class:`Subcommand`
(help text, an argument-parser hook and a handler), so adding one (for
example ``credentials``) is one function pair and one table entry; ``main``
never changes.  Handlers write to the streams they are given rather than to
``sys.stdout`` directly, which keeps them testable without capturing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from lightningstor import __version__
from lightningstor.config import ConfigProblems, Settings, load_settings
from lightningstor.errors import ConfigError, MetadataUnavailable, StorageError

Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]


@dataclass(frozen=True)
class Subcommand:
    """One ``lightningstor-admin`` subcommand.

    ``configure`` adds the subcommand's arguments to its parser; ``run``
    gets the parsed arguments and the output and error streams and returns
    the process exit status.
    """

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Handler


# --------------------------------------------------------------------------
# check-config
# --------------------------------------------------------------------------


def _configure_check_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the TOML configuration file to check")
    parser.add_argument(
        "--ignore-env",
        action="store_true",
        help="check the file alone, without the LIGHTNINGSTOR_* environment overrides",
    )


def _toml_value(value: Any) -> str:
    """Show a value the way it would be written in the config file."""
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def _flatten(prefix: str, node: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            yield from _flatten(path, value)
        else:
            yield path, value


def effective_values(settings: Settings) -> list[tuple[str, Any]]:
    """Every effective setting as ``(dotted key, value)``, in file order.

    The ``options`` copies are left out except for plugin sub-tables
    (``storage.distributed.*``, ``metadata.sqlite.*``...), which appear
    nowhere else.
    """
    tree = settings.to_dict()
    rows: list[tuple[str, Any]] = []
    for section, value in tree.items():
        if not isinstance(value, Mapping):
            rows.append((section, value))
            continue
        for key, item in value.items():
            path = f"{section}.{key}"
            if key == "options" and isinstance(item, Mapping):
                for name, sub in item.items():
                    if isinstance(sub, Mapping):
                        rows.extend(_flatten(f"{section}.{name}", sub))
            elif isinstance(item, Mapping):
                rows.extend(_flatten(path, item))
            else:
                rows.append((path, item))
    return rows


def _missing_files(settings: Settings) -> list[str]:
    """Files the server would have to read at start-up that are not readable
    here.  A missing master key is not one: the server creates it on first run."""
    problems = []
    tls = settings.server.tls
    candidates = [
        ("server.tls.cert_file", tls.cert_file if tls else None),
        ("server.tls.key_file", tls.key_file if tls else None),
        ("server.tls.ca_file", tls.ca_file if tls else None),
    ]
    # The distributed backend's client certificate for the nodes' mutual TLS.
    distributed = settings.storage.options.get("distributed") or {}
    for name in ("tls_cert_file", "tls_key_file", "tls_ca_file"):
        candidates.append((f"storage.distributed.{name}", distributed.get(name)))
    # The aegis authorizer reads its service account token at start-up.
    if settings.iam.authorizer == "aegis":
        candidates.append(("iam.token_path", settings.iam.token_path))
    for key, path in candidates:
        if path is None:
            continue
        if not os.path.isfile(path):
            problems.append(f"{key}: {path}: no such file")
        elif not os.access(path, os.R_OK):
            problems.append(f"{key}: {path}: not readable")
    # The master key file may be missing (the server creates it), but one
    # that exists must be one, as the server reads it.
    master = settings.security.master_key_file
    if os.path.lexists(master):
        from lightningstor.core.credentials import read_master_key_file

        try:
            read_master_key_file(master)
        except (OSError, ValueError) as e:
            problems.append(f"security.master_key_file: {master}: {getattr(e, 'strerror', None) or e}")
    return problems


def check_config(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Validate a config file exactly as the server would, without starting
    anything or touching the data directory.  Exit status 0 when valid, 1
    with every problem on stderr otherwise."""
    env: Mapping[str, str] = {} if args.ignore_env else os.environ
    try:
        settings = load_settings(env=env, cli={"config": args.file})
    except ConfigProblems as exc:
        problems = list(exc.problems)
    except ConfigError as exc:
        problems = [str(exc)]
    else:
        problems = _missing_files(settings)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=err)
        count = len(problems)
        print(f"{args.file}: {count} problem{'s' if count != 1 else ''}", file=err)
        return 1
    print(f"OK: {args.file}", file=out)
    for key, value in effective_values(settings):
        print(f"  {key} = {_toml_value(value)}", file=out)
    return 0


# --------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------

def _configure_presign(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="object URL, e.g. http://127.0.0.1:9000/bucket/key")
    parser.add_argument("--method", default="GET", choices=["GET", "PUT", "HEAD", "DELETE"])
    parser.add_argument("--expires", type=int, default=3600, help="seconds, 1..604800 (default 3600)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--access-key",
        default=os.environ.get("LIGHTNINGSTOR_ACCESS_KEY") or os.environ.get("LIGHTNINGSTOR_ROOT_ACCESS_KEY"),
        help="default: $LIGHTNINGSTOR_ACCESS_KEY or $LIGHTNINGSTOR_ROOT_ACCESS_KEY",
    )
    parser.add_argument(
        "--secret-key-env",
        default=None,
        help="name of the environment variable holding the secret (default: "
        "LIGHTNINGSTOR_SECRET_KEY, then LIGHTNINGSTOR_ROOT_SECRET_KEY); never pass secrets as arguments",
    )


def presign(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print a SigV4 presigned URL for a credential taken from the environment."""
    from lightningstor.auth.presign import presign_v4

    names = [args.secret_key_env] if args.secret_key_env else ["LIGHTNINGSTOR_SECRET_KEY", "LIGHTNINGSTOR_ROOT_SECRET_KEY"]
    secret = next((os.environ[n] for n in names if os.environ.get(n)), None)
    if not args.access_key or not secret:
        print("presign: no credential: set LIGHTNINGSTOR_ACCESS_KEY and LIGHTNINGSTOR_SECRET_KEY", file=err)
        return 1
    try:
        url = presign_v4(args.method, args.url, args.access_key, secret, region=args.region, expires=args.expires)
    except ValueError as e:
        print(f"presign: {e}", file=err)
        return 1
    print(url, file=out)
    return 0


# --------------------------------------------------------------------------
# collect, scrub: offline maintenance on the server's own data
# --------------------------------------------------------------------------


def _configure_data_command(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="the server's TOML configuration file")
    parser.add_argument("--data-dir", default=None, help="the server's data directory (overrides the file)")


def _configure_collect(parser: argparse.ArgumentParser) -> None:
    _configure_data_command(parser)
    parser.add_argument(
        "--grace-seconds",
        type=_grace_seconds,
        default=24 * 3600.0,
        help="only delete what stays unreferenced this long: the command looks now, then every quarter "
        "of this time until it has passed (default 86400, at most 366 days). At least twice the longer "
        "of limits.max_write_seconds and storage.free_delay_seconds of the configuration, unless "
        "--unsafe-short-grace",
    )
    parser.add_argument(
        "--unsafe-short-grace",
        action="store_true",
        help="accept a --grace-seconds below that bound (0: one look, deletes at once); it can delete "
        "the chunks of writes in flight and freed chunks that reads still stream: only while no "
        "server uses this data",
    )


MAX_GRACE_SECONDS = 366 * 86400.0  # as [collector] grace_seconds


def _grace_seconds(text: str) -> float:
    """``--grace-seconds``: a number of seconds from 0 to a year (``inf``
    waited forever; ``nan`` passed every comparison)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= MAX_GRACE_SECONDS:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and {MAX_GRACE_SECONDS:g} seconds")
    return value


def collect_grace_problem(settings: Settings, grace_seconds: float, unsafe: bool) -> str | None:
    """Why ``collect`` must not run with ``grace_seconds``, or None.

    A chunk is unreferenced while the write that stored it is in flight (up
    to ``limits.max_write_seconds``) and while it waits out
    ``storage.free_delay_seconds`` after an overwrite or a delete.  The
    server's own collector is held to twice the longer of the two
    (config.py ``_at_most_half_the_grace``); the command takes the same
    bound, from the configuration it loads, unless the operator overrides it
    (``--unsafe-short-grace``, for a data directory no server uses)."""
    write, delay = settings.limits.max_write_seconds, settings.storage.free_delay_seconds
    bound = 2 * max(write, delay)
    if unsafe or grace_seconds >= bound:
        return None
    return (
        f"--grace-seconds {grace_seconds:g} is shorter than twice the longer of limits.max_write_seconds "
        f"({write:g}) and storage.free_delay_seconds ({delay:g}), {bound:g} s: it could delete the chunks of a "
        "write in flight or freed chunks that reads still stream. Pass --unsafe-short-grace to run it "
        "anyway, only while no server uses this data"
    )


def _with_stores(
    args: argparse.Namespace,
    err: TextIO,
    work: Callable[[Any, Any], Coroutine[Any, Any, int]],
    *,
    refuse: Callable[[Settings], str | None] | None = None,
    creates: bool = False,
) -> int:
    """Open the metadata store and the storage backend exactly as the server
    does (``plugins.open_plugins``: the same paths, the same plugin options),
    run the coroutine ``work(store, backend)`` on a real reactor (the stores
    need its thread pools), close everything and return its exit status.

    ``refuse`` sees the loaded settings first: a message from it is an
    argument error (exit status 2, like argparse's), reported before any
    store is opened.  Unless the command ``creates`` what it needs (the
    identity commands provision a store before the server's first start),
    a SQLite store that does not exist is refused the same way: opening it
    would create an empty one, and a scrub, a collection or a quota report
    of a mistyped ``--data-dir`` would report an empty store as clean.

    A SIGINT or SIGTERM stops the reactor before ``work`` ends: the thread
    pools are stopped then too (their threads would keep the process
    alive), and the exit status is 130.

    Runs the global reactor, so it can be used once per process (the
    console script).
    """
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred, maybeDeferred

    from lightningstor.plugins import open_plugins
    from lightningstor.threads import ThreadPools

    try:
        settings = load_settings(env=os.environ, cli={"config": args.config, "data_dir": args.data_dir})
    except ConfigProblems as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=err)
        return 1
    except ConfigError as exc:
        print(f"error: {exc}", file=err)
        return 1
    refusal = refuse(settings) if refuse is not None else None
    if refusal is None and not creates:
        refusal = _missing_store(settings)
    if refusal is not None:
        command = " ".join(filter(None, ["lightningstor-admin", getattr(args, "command", None)]))
        print(f"{command}: error: {refusal}", file=err)
        return 2
    pools = ThreadPools(reactor)
    pools.start()
    status: list[int] = []

    async def run() -> None:
        try:
            store, backend = open_plugins(settings, reactor, pools.io)
        except (ConfigError, MetadataUnavailable, StorageError) as exc:
            print(f"error: {exc}", file=err)
            status.append(1)
            return
        try:
            status.append(await ensureDeferred(work(store, backend)))
        except (MetadataUnavailable, StorageError) as exc:
            # A store down or unreadable (etcd not answering, a metadata.db
            # that is no database): one line, as access-control.md promises.
            print(f"error: {exc}", file=err)
            status.append(1)
        finally:
            await maybeDeferred(backend.close)
            await maybeDeferred(store.close)

    def done(result: object) -> None:
        if hasattr(result, "getTraceback"):
            print(result.getTraceback(), file=err)  # type: ignore[attr-defined]
        pools.stopService()
        reactor.stop()  # type: ignore[attr-defined]

    work_run = run()
    reactor.callWhenRunning(lambda: ensureDeferred(work_run).addBoth(done))  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    if pools.io.started or pools.cpu.started:  # stopped by a signal, not by done()
        pools.stopService()
        # The work was cut while it awaited: closed now, its ``finally``
        # cannot await the stores' close (the reactor is gone); left to the
        # collector at exit, Python printed "coroutine ignored GeneratorExit".
        try:
            work_run.close()
        except RuntimeError:
            pass
        print("interrupted", file=err)
        return 130
    return status[0] if status else 1


def _missing_store(settings: Settings) -> str | None:
    """Why the configured store cannot be opened without creating it: a
    SQLite database file that is not there (other stores are not files)."""
    from lightningstor.metadata.sqlite import database_path
    from lightningstor.plugins import plugin_options

    if settings.metadata.backend != "sqlite":
        return None
    path = database_path(plugin_options(settings.metadata.options, "sqlite"), settings.data_dir)
    if os.path.exists(path):
        return None
    return (
        f"no metadata store at {path}: are --config and --data-dir the server's? "
        "(this command does not create one)"
    )


COLLECT_PASSES = 4
"""Passes of ``collect`` after its first look, a quarter of the grace apart."""


def collect(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Delete chunks that no committed record references (what the server's
    hourly collector does, with a grace period of your choice).

    The grace period is measured on this process's monotonic clock, never
    against file or record times (core/collector.py): a first pass notes
    what is unreferenced, and passes every quarter of ``--grace-seconds``
    forget what was referenced meanwhile, until the last one deletes what
    stayed unreferenced all along.  Two passes a grace apart were not
    enough: a chunk of a write in flight at the first, then part of an
    object, then freed by an overwrite shortly before the second, looked
    unreferenced at both and was deleted inside its free delay, under a
    GET still streaming it.  A pass inside the time the chunk was
    referenced forgets it; with a grace of at least twice the longer of
    ``max_write_seconds`` and ``free_delay_seconds`` such a chunk is
    referenced at the pass half-way.  With 0 a single pass deletes at once.
    A grace below the configuration's bound (:func:`collect_grace_problem`)
    is refused unless ``--unsafe-short-grace`` is given.
    """
    import time

    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    from lightningstor.core.collector import Sightings, collect_orphans

    async def work(store: Any, backend: Any) -> int:
        seen = Sightings()
        start = time.monotonic()
        n = await collect_orphans(store, backend, start, args.grace_seconds, seen)
        if args.grace_seconds > 0:
            print(
                f"{len(seen)} unreferenced chunks, entries or manifests; looking again every "
                f"{args.grace_seconds / COLLECT_PASSES:g} s until {args.grace_seconds:g} s have passed",
                file=out,
                flush=True,
            )
            step = args.grace_seconds / COLLECT_PASSES
            for k in range(1, COLLECT_PASSES + 1):
                while (left := k * step - (time.monotonic() - start)) > 0:
                    await deferLater(reactor, left)  # type: ignore[arg-type]
                n += await collect_orphans(store, backend, time.monotonic(), args.grace_seconds, seen)
        print(f"collected {n} orphaned chunks", file=out)
        # Half-written chunk files a crash left in the backend's tmp/ (the
        # ``local`` backend removes them at start-up only after an hour).
        cleanup_tmp = getattr(backend, "cleanup_tmp", None)
        if cleanup_tmp is not None:
            removed = await cleanup_tmp(args.grace_seconds)
            print(f"removed {removed} temporary chunk files", file=out)
        return 0

    return _with_stores(
        args, err, work, refuse=lambda s: collect_grace_problem(s, args.grace_seconds, args.unsafe_short_grace)
    )


def scrub_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Verify every referenced chunk and the chunk index; one line per
    problem, a summary last; exit status 0 when clean, 3 when problems were
    found."""
    from lightningstor.core.scrub import iter_problem_lines, scrub

    def report(result: Any) -> int:
        for line in iter_problem_lines(result):
            print(line, file=out)
        return 0 if result.ok else 3

    async def work(store: Any, backend: Any) -> int:
        return report(await scrub(store, backend))

    return _with_stores(args, err, work)


SUBCOMMANDS: dict[str, Subcommand] = {
    "collect": Subcommand(
        help="delete orphaned chunks (no committed record references them)",
        configure=_configure_collect,
        run=collect,
    ),
    "scrub": Subcommand(
        help="read and verify every referenced chunk and audit the chunk index",
        configure=_configure_data_command,
        run=scrub_command,
    ),
    "presign": Subcommand(
        help="print a presigned URL (SigV4 query auth) for an object",
        configure=_configure_presign,
        run=presign,
    ),
    "check-config": Subcommand(
        help="validate a configuration file and print the effective settings",
        configure=_configure_check_config,
        run=check_config,
    ),
}
# Identity commands live in their own module (it imports this one's helpers).
from lightningstor import admin_iam  # noqa: E402

SUBCOMMANDS.update(admin_iam.subcommands())
# Quota commands, likewise.
from lightningstor import admin_quotas  # noqa: E402

SUBCOMMANDS.update(admin_quotas.subcommands())
# SSE-S3 maintenance (``sse rewrap``), likewise.
from lightningstor import admin_sse  # noqa: E402

SUBCOMMANDS.update(admin_sse.subcommands())
# Online backup of a SQLite + local data directory, likewise.
from lightningstor import admin_backup  # noqa: E402

SUBCOMMANDS.update(admin_backup.subcommands())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one sub-parser per :data:`SUBCOMMANDS` entry."""
    parser = argparse.ArgumentParser(
        prog="lightningstor-admin", description="LightningStor administration commands."
    )
    parser.add_argument("-V", "--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in SUBCOMMANDS.items():
        command.configure(commands.add_parser(name, help=command.help, description=command.help))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lightningstor-admin`` console script.

    Returns the exit status instead of exiting (argparse's own exits for
    ``--help`` and usage errors are turned into return values too), so
    tests and other Python callers can invoke it directly.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("lightningstor-admin: error: a command is required", file=sys.stderr)
        return 2
    return SUBCOMMANDS[args.command].run(args, sys.stdout, sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
