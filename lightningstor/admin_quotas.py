"""``lightningstor-admin quota set|show``: quotas and usage (SPEC §7.4).

``quota set`` changes the limits of an org, of a project (``--project``) or
of one bucket (``--bucket``: its BucketQuota); limits not named keep their
value and ``none`` removes one.  ``quota show`` prints a scope's limits and
its current usage (``--json`` for scripts).

Like ``collect`` these open the server's own metadata store
(:func:`lightningstor.admin._with_stores`) and may run while the server
runs: every commit of the server compares the revisions of the limit
records it relied on, so a limit set here applies to the server's very next
write (see :mod:`lightningstor.core.quotas`).  The rules live in the core;
this module parses, calls :class:`~lightningstor.core.quotas.QuotaManager`
and prints.  Bad input is one ``error:`` line and exit status 2, and changes
nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TextIO

from twisted.internet.defer import Deferred

from lightningstor import errors
from lightningstor.core import keys, records
from lightningstor.core.principals import validate_id
from lightningstor.core.quotas import BucketQuota, QuotaManager, StorageLimits, Usage, decode_usage
from lightningstor.core.types import Bucket
from lightningstor.interfaces.metadata import IMetadataStore, prefix_end

if TYPE_CHECKING:
    from lightningstor.admin import Subcommand

REFUSED = 2

# --option -> (limit name on an org/project, limit name on a bucket)
_OPTIONS: dict[str, tuple[str | None, str | None]] = {
    "max_buckets": ("max_buckets", None),
    "max_bytes": ("max_total_size_bytes", "max_size_bytes"),
    "max_objects_per_bucket": ("max_objects_per_bucket", None),
    "max_object_size": ("max_object_size_bytes", None),
    "max_objects": (None, "max_objects"),
}
_SIZE = re.compile(r"^([0-9]+)\s*([kmgtp]?)(i?)b?\Z", re.IGNORECASE)
_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
MAX_LIMIT = 2**63 - 1
"""The largest limit: a signed 64-bit count of bytes or objects, as other
tools (and SQLite's integers) read stored numbers."""


class Refused(Exception):
    """The command's input is wrong: one ``error:`` line, exit status 2."""


def parse_limit(text: str) -> int | None:
    """A limit as typed: ``none`` (remove it), a count, or a size such as
    ``10GiB``/``500MB`` (binary with ``i``, decimal without)."""
    value = text.strip()
    if value.lower() in ("none", "unlimited"):
        return None
    m = _SIZE.match(value)
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a non-negative integer, a size like 10GiB, or none")
    number, unit, binary = m.groups()
    base = 1024 if binary else 1000
    if len(number.lstrip("0")) > 19:  # int() refuses over 4,300 digits with a traceback
        raise argparse.ArgumentTypeError(f"{text!r}: at most {MAX_LIMIT}")
    limit = int(number) * base ** _UNITS[unit.lower()]
    if limit > MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{text!r}: at most {MAX_LIMIT}")
    return limit


async def _wait(d: Deferred[Any]) -> Any:
    return await d


async def _find_bucket(store: IMetadataStore, org: str, project: str | None, name: str) -> Bucket:
    kv = await _wait(store.get(keys.bucket_key(org, project, name)))
    if kv is None:
        where = f"{org}/{project}" if project else org
        raise Refused(f"no bucket {name!r} in {where}")
    return records.decode_bucket(kv.value)


def _scope(args: argparse.Namespace) -> tuple[str, str | None]:
    try:
        org = validate_id(args.org, "org")
        project = validate_id(args.project, "project") if args.project else None
    except ValueError as e:
        raise Refused(str(e)) from None
    return org, project


def _changes(args: argparse.Namespace, bucket: bool) -> dict[str, int | None]:
    """The limits the command line names, under their record names."""
    changes: dict[str, int | None] = {}
    for option, (scope_name, bucket_name) in _OPTIONS.items():
        if not hasattr(args, option) or getattr(args, option) is _UNSET:
            continue
        name = bucket_name if bucket else scope_name
        if name is None:
            flag = "--" + option.replace("_", "-")
            where = "an org or project" if bucket else "a bucket (--bucket)"
            raise Refused(f"{flag} applies only to {where}")
        changes[name] = getattr(args, option)
    if not changes:
        raise Refused("name at least one limit to set (see --help)")
    return changes


_UNSET: Any = object()


def _usage_json(usage: Usage) -> dict[str, int]:
    return {
        "total_size_bytes": usage.total_bytes,
        "object_bytes": usage.bytes,
        "upload_bytes": usage.upload_bytes,
        "object_count": usage.objects,
    }


def _limits_json(limits: StorageLimits | BucketQuota | None, empty: StorageLimits | BucketQuota) -> dict[str, Any]:
    source = limits if limits is not None else empty
    return {name: getattr(source, name) for name in source.__dataclass_fields__}


async def describe(store: IMetadataStore, org: str, project: str | None, bucket_name: str | None) -> dict[str, Any]:
    """The limits and usage of a scope, as ``quota show --json`` prints them."""
    quotas = QuotaManager(store, time.time)
    if bucket_name is not None:
        bucket = await _find_bucket(store, org, project, bucket_name)
        quota = await _wait(quotas.get_bucket_quota(bucket.bucket_id))
        usage = await _wait(quotas.usage(org, project, bucket.bucket_id))
        return {
            "scope": {"org_id": org, "project_id": project, "bucket": bucket_name, "bucket_id": bucket.bucket_id},
            "limits": _limits_json(quota, BucketQuota()),
            "usage": _usage_json(usage),
        }
    limits = await _wait(quotas.get_limits(org, project))
    usage = await _wait(quotas.usage(org, project))
    count = await _wait(quotas.bucket_count(org, project))
    return {
        "scope": {"org_id": org, "project_id": project},
        "limits": _limits_json(limits, StorageLimits()),
        "usage": {"bucket_count": count, **_usage_json(usage)},
        "buckets": await _per_bucket(store, org, project),
    }


async def _per_bucket(store: IMetadataStore, org: str, project: str | None) -> list[dict[str, Any]]:
    """Usage of each bucket of the scope (one scan of buckets, one of usage)."""
    bprefix = keys.bucket_key(org, project, "") if project else keys.org_buckets_prefix(org)
    rows = await _wait(store.scan(bprefix, prefix_end(bprefix)))
    buckets = [records.decode_bucket(kv.value) for kv in rows]
    uprefix = keys.usage_scope_prefix(org, project)
    usage_rows = await _wait(store.scan(uprefix, prefix_end(uprefix)))
    by_id: dict[str, Usage] = {}
    for kv in usage_rows:
        bucket_id = _bucket_id_of(kv.key)
        by_id[bucket_id] = by_id.get(bucket_id, Usage()) + decode_usage(kv.value)
    out = []
    for b in sorted(buckets, key=lambda b: (b.project_id or "", b.name)):
        out.append({"name": b.name, "project_id": b.project_id, **_usage_json(by_id.get(b.bucket_id, Usage()))})
    return out


def _bucket_id_of(key: bytes) -> str:
    """The bucket id of a usage row (``usage/{org}/{project}/{bucket_id}/...``)."""
    return key[len(keys.USAGE):].split(b"/", 3)[2].decode()


def _print_text(out: TextIO, info: dict[str, Any]) -> None:
    scope = info["scope"]
    where = f"org {scope['org_id']}"
    if scope.get("project_id"):
        where += f" project {scope['project_id']}"
    if scope.get("bucket"):
        where += f" bucket {scope['bucket']}"
    print(where, file=out)
    print("limits:", file=out)
    for name, value in info["limits"].items():
        print(f"  {name:<24} {'none' if value is None else value}", file=out)
    print("usage:", file=out)
    for name, value in info["usage"].items():
        print(f"  {name:<24} {value}", file=out)
    if info.get("buckets"):
        print("buckets:", file=out)
        for b in info["buckets"]:
            name = f"{b['project_id']}/{b['name']}" if b["project_id"] else b["name"]
            print(f"  {name:<32} {b['total_size_bytes']:>16} bytes {b['object_count']:>10} objects", file=out)


async def quota_set(args: argparse.Namespace, out: TextIO, store: IMetadataStore) -> int:
    """Merge the named limits into the scope's record; print the result."""
    org, project = _scope(args)
    quotas = QuotaManager(store, time.time)
    if args.bucket is not None:
        changes = _changes(args, bucket=True)
        bucket = await _find_bucket(store, org, project, args.bucket)
        await _wait(quotas.set_bucket_quota(bucket, changes))
    else:
        await _wait(quotas.set_limits(org, project, _changes(args, bucket=False)))
    _report(args, out, await describe(store, org, project, args.bucket))
    return 0


def _report(args: argparse.Namespace, out: TextIO, info: dict[str, Any]) -> None:
    """A scope's limits and usage, as JSON (``--json``) or text."""
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True), file=out)
    else:
        _print_text(out, info)


async def quota_show(args: argparse.Namespace, out: TextIO, store: IMetadataStore) -> int:
    """Print a scope's limits and usage."""
    org, project = _scope(args)
    _report(args, out, await describe(store, org, project, args.bucket))
    return 0


Command = Callable[[argparse.Namespace, TextIO, IMetadataStore], Awaitable[int]]


async def execute(command: Command, args: argparse.Namespace, out: TextIO, err: TextIO, store: IMetadataStore) -> int:
    """Run one command; refusals become one ``error:`` line and status 2."""
    try:
        return await command(args, out, store)
    except Refused as e:
        print(f"error: {e}", file=err)
    except errors.S3Error as e:  # the core's validation (InvalidArgument...)
        print(f"error: {e.code}: {e.message}", file=err)
    return REFUSED


def _handler(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from lightningstor.admin import _with_stores

    command: Command = args.quota_command

    async def work(store: Any, backend: Any) -> int:
        return await execute(command, args, out, err, store)

    return _with_stores(args, err, work)


def _configure(parser: argparse.ArgumentParser) -> None:
    group = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, command, help_ in (
        ("set", quota_set, "set limits of an org, a project (--project) or a bucket (--bucket)"),
        ("show", quota_show, "show the limits and current usage of an org, a project or a bucket"),
    ):
        epilog = "N is a count, a size such as 500MB or 10GiB, or none (removes the limit)." if name == "set" else None
        sub = group.add_parser(name, help=help_, description=help_, epilog=epilog)
        sub.add_argument("--org", required=True, help="the org")
        sub.add_argument("--project", default=None, help="a project of the org")
        sub.add_argument("--bucket", default=None, help="a bucket of the org (or of --project)")
        if name == "set":
            limit = {"type": parse_limit, "default": _UNSET, "metavar": "N"}
            sub.add_argument("--max-buckets", **limit, help="org/project: buckets at most")
            sub.add_argument("--max-bytes", **limit,
                             help="org/project: max_total_size_bytes; bucket: max_size_bytes (e.g. 10GiB)")
            sub.add_argument("--max-objects-per-bucket", **limit, help="org/project: object versions per bucket")
            sub.add_argument("--max-object-size", **limit, help="org/project: bytes per object (e.g. 5GiB)")
            sub.add_argument("--max-objects", **limit, help="bucket: object versions at most")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
        sub.add_argument("--config", default=None, help="the server's TOML configuration file")
        sub.add_argument("--data-dir", default=None, help="the server's data directory (overrides the file)")
        sub.set_defaults(quota_command=command)


def subcommands() -> dict[str, Subcommand]:
    """``quota`` for :data:`lightningstor.admin.SUBCOMMANDS` (imported lazily
    by ``admin``, so either module can be imported first)."""
    from lightningstor.admin import Subcommand

    return {
        "quota": Subcommand("set and show quotas (limits) and usage of orgs, projects and buckets",
                            _configure, _handler),
    }
