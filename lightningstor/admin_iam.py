"""``lightningstor-admin`` identity commands: principals, access keys, grants
and tenant buckets (``principal``, ``key``, ``grant``, ``bucket``).

They open the server's own metadata store exactly as ``collect`` does
(:func:`lightningstor.admin._with_stores`: the same config, the same data
dir), so they see and change what the server sees, and they may run while
the server runs: SQLite in WAL mode takes writers from several processes,
and the server's credential and grant caches expire within
``[iam] cache_seconds``.  Access-key secrets are encrypted with the server's
master key (``[security] master_key_file``), which is loaded, never replaced:
a key encrypted with any other master key would be useless to the server.

The rules stay in the core (``core.principals``, ``core.credentials``,
``authz.grants``, ``core.buckets``); this module parses arguments, calls them
and prints.  Bad input (an invalid id, an unknown action, a principal that
does not exist...) is refused with one ``error:`` line and exit status 2, and
changes nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TextIO

from twisted.internet.defer import Deferred

from lightningstor import errors
from lightningstor.authz.grants import Grant, GrantStore, subject_of
from lightningstor.core import keys, records
from lightningstor.core.buckets import BucketManager
from lightningstor.core.credentials import Credential, CredentialStore, MasterKeyMismatch
from lightningstor.core.principals import PrincipalRecord, PrincipalStore, validate_id, validate_role
from lightningstor.core.types import Bucket, Principal
from lightningstor.interfaces.metadata import IMetadataStore, prefix_end

if TYPE_CHECKING:
    from lightningstor.admin import Subcommand

# Exit statuses: 0 done, 1 could not open the stores or failed unexpectedly
# (as ``collect``), 2 the request itself was refused (nothing changed).
REFUSED = 2


class Refused(Exception):
    """The command's input is wrong: reported as ``error: ...``, exit status 2."""


@dataclass
class IamContext:
    """What one command works with: the server's store, and how to get the
    master key (only ``key`` commands need it, so it is loaded on demand)."""

    store: IMetadataStore
    load_master_key: Callable[[], bytes]
    clock: Callable[[], float] = time.time
    region: str = "us-east-1"
    # [s3] default_object_ownership: what `bucket create` gives a new bucket.
    default_object_ownership: str = "BucketOwnerEnforced"
    _credentials: CredentialStore | None = field(default=None, init=False, repr=False)

    @property
    def principals(self) -> PrincipalStore:
        return PrincipalStore(self.store, self.clock)

    @property
    def grants(self) -> GrantStore:
        return GrantStore(self.store, self.clock)

    @property
    def buckets(self) -> BucketManager:
        manager = BucketManager(self.store, self.clock, self.region)
        manager.default_object_ownership = self.default_object_ownership
        return manager

    @property
    def credentials(self) -> CredentialStore:
        # No lookup cache: every admin read must see the store as it is now.
        if self._credentials is None:
            self._credentials = CredentialStore(
                self.store, self.load_master_key(), clock=self.clock, cache_ttl=0.0
            )
        return self._credentials


Command = Callable[[argparse.Namespace, TextIO, IamContext], Awaitable[int]]


async def _wait(d: Deferred[Any]) -> Any:
    """Await a core Deferred (the core's ``inlineCallbacks`` methods are typed ``Any``)."""
    return await d


MAX_EXPIRES_IN = 100 * 366 * 86400
"""The longest ``key create --expires-in`` (about a century): a larger one
was stored and then broke every listing of the principal's keys (a time
the C library cannot format), and ``inf`` failed after nothing was checked."""


def _ms_text(ms: int | None) -> str:
    if ms is None:
        return "never"
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms since the epoch"  # a key stored before the bound


def _table(out: TextIO, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Left-aligned columns, one row per line (what an operator reads)."""
    materialized = [list(header)] + [list(r) for r in rows]
    widths = [max(len(r[i]) for r in materialized) for i in range(len(header))]
    for row in materialized:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip(), file=out)


def _emit_json(out: TextIO, value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True), file=out)


# --------------------------------------------------------------------------
# principal
# --------------------------------------------------------------------------


def principal_json(p: PrincipalRecord) -> dict[str, Any]:
    return {
        "principal_id": p.principal_id,
        "org_id": p.org_id,
        "project_id": p.project_id,
        "display_name": p.display_name,
        "roles": list(p.roles),
        "disabled": p.disabled,
        "created_at": p.created_at,
    }


def _print_principals(out: TextIO, as_json: bool, records_: list[PrincipalRecord]) -> None:
    if as_json:
        _emit_json(out, [principal_json(p) for p in records_])
        return
    _table(
        out,
        ("PRINCIPAL", "ORG", "PROJECT", "ROLES", "STATUS", "NAME"),
        (
            (p.principal_id, p.org_id, p.project_id or "-", ",".join(p.roles) or "-",
             "disabled" if p.disabled else "active", p.display_name)
            for p in records_
        ),
    )


async def _get_principal(ctx: IamContext, principal_id: str) -> PrincipalRecord:
    validate_id(principal_id, "principal id")
    record: PrincipalRecord | None = await _wait(ctx.principals.get(principal_id))
    if record is None:
        raise Refused(f"no principal {principal_id!r}")
    return record


async def principal_create(args: argparse.Namespace, out: TextIO, ctx: IamContext) -> int:
    """Create a principal in an org (and optionally a project) with its roles.
    Custom role names are accepted: their permissions come from role grants."""
    record: PrincipalRecord = await _wait(
        ctx.principals.create(
            args.id, args.org, args.project, roles=tuple(args.role or ()), display_name=args.name or ""
        )
    )
    if args.json:
        _emit_json(out, principal_json(record))
    else:
        scope = f"org {record.org_id}" + (f", project {record.project_id}" if record.project_id else "")
        print(f"created principal {record.principal_id} ({scope}; roles: {', '.join(record.roles) or 'none'})",
              file=out)
    return 0


async def principal_list(args: argparse.Namespace, out: TextIO, ctx: IamContext) -> int:
    if args.org is not None:
        validate_id(args.org, "org id")
    found: list[PrincipalRecord] = await _wait(ctx.principals.list(args.org))
    _print_principals(out, args.json, found)
    return 0


async def _change_principal(
    ctx: IamContext, principal_id: str, change: Callable[[PrincipalRecord], PrincipalRecord]
) -> PrincipalRecord:
    await _get_principal(ctx, principal_id)
    try:
        record: PrincipalRecord = await _wait(ctx.principals.update(principal_id, change))
    except KeyError:
        raise Refused(f"no principal {principal_id!r}") from None
    return record


def _show_principal(args: argparse.Namespace, out: TextIO, record: PrincipalRecord, verb: str) -> int:
    if args.json:
        _emit_json(out, principal_json(record))
    else:
        print(f"{verb} principal {record.principal_id}", file=out)
    return 0


async def principal_disable(args: argparse.Namespace, out: TextIO, ctx: IamContext) -> int:
    """Disable a principal: every access key it owns stops working (within
    the server's ``cache_seconds``), its keys and grants are kept."""
    record = await _change_principal(ctx, args.id, lambda r: replace(r, disabled=True))
    return _show_principal(args, out, record, "disabled")


async def principal_enable(args: argparse.Namespace, out: TextIO, ctx: IamContext) -> int:
    record = await _change_principal(ctx, args.id, lambda r: replace(r, disabled=False))
    return _show_principal(args, out, record, "enabled")


async def principal_roles(args: argparse.Namespace, out: TextIO, ctx: IamContext) -> int:
    """Replace a principal's roles.  Taking every role away needs
    ``--no-roles``: an empty ``--role`` list is more likely a mistake."""
    roles = tuple(dict.fromkeys(args.role or ()))
    if not roles and not args.no_roles:
        raise Refused("give the new roles with --role (or --no-roles to remove every role)")
    if roles and args.no_roles:
        raise Refused("--role and --no-roles exclude each other")
    for role in roles:
        validate_role(role)
    record = await _change_principal(ctx, args.id, lambda r: replace(r, roles=roles))
    if args.json:
        _emit_json(out, principal_json(record))
    else:
        print(f"principal {record.principal_id} roles: {', '.join(record.roles) or 'none'}", file=out)
    return 0


# --------------------------------------------------------------------------
# key
# --------------------------------------------------------------------------


def _key_status(cred: Credential, now_ms: int) -> str:
    if cred.disabled:
        return "disabled"
    if cred.expires_at is not None and now_ms >= cred.expires_at:
        return "expired"
    return "active"


def key_json(cred: Credential, now_ms: int) -> dict[str, Any]:
    """A credential without its secret (listings never show secrets)."""
    return {
        "access_key_id": cred.access_key_id,
        "principal_id": cred.principal.principal_id,
        "org_id": cred.principal.org_id,
        "project_id": cred.principal.project_id,
        "created_at": cred.created_at,
        "expires_at": cred.expires_at,
        "disabled": cred.disabled,
        "status": _key_status(cred, now_ms),
    }


async def _check_master_key(ctx: IamContext) -> None:
    """Refuse to write credentials the server could not read: the master key
    must open the store's key check (a wrong ``--data-dir`` or a replaced
    key file would otherwise hand out dead keys); a store without one gets
    it here, as at the server's start."""
    try:
        await _wait(ctx.credentials.check_master_key())
    except MasterKeyMismatch as e:
        raise Refused(f"the master key does not open this store ({e}): "
                      "is [security] master_key_file the server's?") from None


async def key_create(args: argparse.Namespace, out: TextIO, ctx: IamContext) -> int:
    """Create an access key for a principal and print its secret, once: only
    its encrypted form is stored."""
    record = await _get_principal(ctx, args.principal_id)
    expires_at = None
    if args.expires_in is not None:
        if not 0 < args.expires_in <= MAX_EXPIRES_IN:  # also refuses nan and inf
            raise Refused(f"--expires-in {args.expires_in}: a number of seconds > 0, at most {MAX_EXPIRES_IN}")
        expires_at = int((ctx.clock() + args.expires_in) * 1000)
    await _check_master_key(ctx)
    principal = Principal(
        principal_id=record.principal_id,
        org_id=record.org_id,
        project_id=record.project_id,
        display_name=record.display_name,
        roles=record.roles,
    )
    cred: Credential = await _wait(ctx.credentials.create(principal, expires_at=expires_at))
    if args.json:
        shown = key_json(cred, int(ctx.clock() * 1000))
        shown["secret_access_key"] = cred.secret
        _emit_json(out, shown)
    else:
        print(f"access key id:     {cred.access_key_id}", file=out)
        print(f"secret access key: {cred.secret}", file=out)
        print(f"principal:         {record.principal_id}", file=out)
        print(f"expires:           {_ms_text(cred.expires_at)}", file=out)
        print("The secret is shown only this once; it is stored encrypted.", file=out)
    if record.disabled:
        print(f"note: principal {record.principal_id} is disabled: the key works once it is enabled", file=out)
    return 0


async def key_list(args: argparse.Namespace, out: TextIO, ctx: IamContext) -> int:
    await _get_principal(ctx, args.principal_id)
    creds: list[Credential] = await _wait(ctx.credentials.list_keys(args.principal_id))
    now_ms = int(ctx.clock() * 1000)
    if args.json:
        _emit_json(out, [key_json(c, now_ms) for c in creds])
        return 0
    _table(
        out,
        ("ACCESS KEY", "STATUS", "CREATED", "EXPIRES"),
        ((c.access_key_id, _key_status(c, now_ms), _ms_text(c.created_at), _ms_text(c.expires_at))
         for c in creds),
    )
    return 0


async def _set_key_disabled(args: argparse.Namespace, out: TextIO, ctx: IamContext, disabled: bool) -> int:
    try:
        cred: Credential = await _wait(ctx.credentials.set_disabled(args.access_key_id, disabled))
    except KeyError:
        raise Refused(f"no access key {args.access_key_id!r}") from None
    if args.json:
        _emit_json(out, key_json(cred, int(ctx.clock() * 1000)))
    else:
        print(f"{'disabled' if disabled else 'enabled'} access key {cred.access_key_id}", file=out)
    return 0


async def key_reencrypt(args: argparse.Namespace, out: TextIO, ctx: IamContext) -> int:
    """Re-encrypt every stored secret with the master key file's first key:
    after it, older keys can be removed from the file."""
    await _check_master_key(ctx)
    count: int = await _wait(ctx.credentials.reencrypt_all())
    if args.json:
        _emit_json(out, {"reencrypted": count})
    else:
        print(f"re-encrypted {count} access key secrets with the first master key", file=out)
    return 0


async def key_adopt_master(args: argparse.Namespace, out: TextIO, ctx: IamContext) -> int:
    """Disaster recovery: make the master key file this store's key after
    the one that wrote it was lost, forgetting the access keys only the lost
    key opened (docs/operations.md, "The master key protects object data")."""
    try:
        await _wait(ctx.credentials.check_master_key())
    except MasterKeyMismatch as e:
        if not args.yes:
            raise Refused(
                f"the master key does not open this store ({e}). Only if the key that wrote it is lost for good: "
                "--yes forgets every access key that key encrypted, and SSE-S3 objects written under it stay "
                "unreadable"
            ) from None
    else:
        print("the master key file already opens this store: nothing to adopt", file=out)
        return 0
    forgotten: int = await _wait(ctx.credentials.adopt_master_key())
    if args.json:
        _emit_json(out, {"forgotten": forgotten})
    else:
        print(f"forgot {forgotten} access keys only the lost master key opened; the master key file is now "
              "this store's. SSE-S3 objects written under the lost key cannot be read. Restart the servers "
              "and create new keys (key create)", file=out)
    return 0


async def key_disable(args: argparse.Namespace, out: TextIO, ctx: IamContext) -> int:
    """Disable one access key (the server refuses it within ``cache_seconds``)."""
    return await _set_key_disabled(args, out, ctx, True)


async def key_enable(args: argparse.Namespace, out: TextIO, ctx: IamContext) -> int:
    return await _set_key_disabled(args, out, ctx, False)


# --------------------------------------------------------------------------
# grant
# --------------------------------------------------------------------------


def grant_json(g: Grant) -> dict[str, Any]:
    return {
        "grant_id": g.grant_id,
        "subject": g.subject,
        "actions": list(g.actions),
        "resources": list(g.resources),
        "effect": g.effect,
        "created_at": g.created_at,
    }


async def _subject(args: argparse.Namespace, ctx: IamContext) -> str | None:
    """``principal:{id}`` / ``role:{name}`` from --principal / --role (None:
    neither).  A grant to a principal that does not exist would be a silent
    typo, so the principal must exist; roles need not (custom roles)."""
    if args.principal is not None:
        await _get_principal(ctx, args.principal)
        return subject_of(principal_id=args.principal)
    if args.role is not None:
        validate_role(args.role)
        return subject_of(role=args.role)
    return None


async def grant_add(args: argparse.Namespace, out: TextIO, ctx: IamContext) -> int:
    """Allow (or with --deny, forbid) actions on resource patterns."""
    subject = await _subject(args, ctx)
    if subject is None:
        raise Refused("a grant needs --principal ID or --role ROLE")
    grant: Grant = await _wait(
        ctx.grants.add(subject, tuple(args.action), tuple(args.resource), "deny" if args.deny else "allow")
    )
    if args.json:
        _emit_json(out, grant_json(grant))
    else:
        print(grant.grant_id, file=out)
    return 0


async def grant_list(args: argparse.Namespace, out: TextIO, ctx: IamContext) -> int:
    subject = await _subject(args, ctx)
    found: list[Grant] = await _wait(ctx.grants.all() if subject is None else ctx.grants.of(subject))
    if args.json:
        _emit_json(out, [grant_json(g) for g in found])
        return 0
    _table(
        out,
        ("GRANT", "SUBJECT", "EFFECT", "ACTIONS", "RESOURCES"),
        ((g.grant_id, g.subject, g.effect, ",".join(g.actions), ",".join(g.resources)) for g in found),
    )
    return 0


async def grant_revoke(args: argparse.Namespace, out: TextIO, ctx: IamContext) -> int:
    gone: bool = await _wait(ctx.grants.revoke(args.grant_id))
    if not gone:
        raise Refused(f"no grant {args.grant_id!r}")
    if args.json:
        _emit_json(out, {"grant_id": args.grant_id, "revoked": True})
    else:
        print(f"revoked grant {args.grant_id}", file=out)
    return 0


# --------------------------------------------------------------------------
# bucket
# --------------------------------------------------------------------------


def bucket_json(b: Bucket) -> dict[str, Any]:
    return {
        "name": b.name,
        "org_id": b.org_id,
        "project_id": b.project_id,
        "owner": b.created_by,
        "versioning": b.versioning.value,
        "created_at": b.created_at,
    }


async def _bucket_owner(ctx: IamContext, org: str, project: str | None, owner_id: str | None) -> str:
    """The principal that will own a bucket created for a tenant.

    The owner rule gives a bucket's creator full control of it, so the owner
    must be somebody who could have created it: a principal of that org,
    and for a project principal, of that very project (an org-level
    principal may own a project's bucket; a project member may not own an
    org-wide one).  Without ``--owner`` it is the org's first org-level
    admin; an org with none (a typo, most likely) is refused.
    """
    if owner_id is not None:
        record = await _get_principal(ctx, owner_id)
        if record.org_id != org:
            raise Refused(f"owner {owner_id} belongs to org {record.org_id}, not {org}")
        if record.project_id is not None and record.project_id != project:
            where = f"project {project}" if project else "the org as a whole"
            raise Refused(f"owner {owner_id} belongs to project {record.project_id}: it cannot own a bucket of {where}")
        return record.principal_id
    members: list[PrincipalRecord] = await _wait(ctx.principals.list(org))
    admins = [p for p in members if p.project_id is None and "admin" in p.roles and not p.disabled]
    if not admins:
        raise Refused(f"org {org} has no enabled org-level admin principal to own the bucket: pass --owner")
    return admins[0].principal_id


async def bucket_create(args: argparse.Namespace, out: TextIO, ctx: IamContext) -> int:
    """Create an org-wide or project bucket for a tenant (BucketManager.create,
    as the owner would through S3: the same name rules and uniqueness)."""
    validate_id(args.org, "org id")
    if args.project is not None:
        validate_id(args.project, "project id")
    owner = await _bucket_owner(ctx, args.org, args.project, args.owner)
    creator = Principal(principal_id=owner, org_id=args.org, project_id=args.project)
    bucket: Bucket = await _wait(ctx.buckets.create(creator, args.name))
    if args.json:
        _emit_json(out, bucket_json(bucket))
    else:
        scope = f"org/{bucket.org_id}" + (f"/project/{bucket.project_id}" if bucket.project_id else "")
        print(f"created bucket {bucket.name} in {scope} (owner {bucket.created_by})", file=out)
    return 0


async def bucket_list(args: argparse.Namespace, out: TextIO, ctx: IamContext) -> int:
    """Without --project: every bucket of the org (org-wide and each
    project's).  With --project: what that project's principals see (its
    own buckets and the org-wide ones)."""
    validate_id(args.org, "org id")
    if args.project is not None:
        validate_id(args.project, "project id")
        viewer = Principal(principal_id="lightningstor-admin", org_id=args.org, project_id=args.project)
        found: list[Bucket] = await _wait(ctx.buckets.list(viewer))
    else:
        prefix = keys.org_buckets_prefix(args.org)
        rows = await _wait(ctx.store.scan(prefix, prefix_end(prefix)))
        found = sorted((records.decode_bucket(kv.value) for kv in rows), key=lambda b: (b.project_id or "", b.name))
    if args.json:
        _emit_json(out, [bucket_json(b) for b in found])
        return 0
    _table(
        out,
        ("BUCKET", "ORG", "PROJECT", "OWNER", "CREATED"),
        ((b.name, b.org_id, b.project_id or "-", b.created_by or "-", _ms_text(b.created_at)) for b in found),
    )
    return 0


# --------------------------------------------------------------------------
# Running a command, and the argument parsers
# --------------------------------------------------------------------------


async def execute(command: Command, args: argparse.Namespace, out: TextIO, err: TextIO, ctx: IamContext) -> int:
    """Run one command; refusals (bad ids, unknown actions or principals,
    bucket name conflicts) become one ``error:`` line and exit status 2."""
    try:
        return await command(args, out, ctx)
    except Refused as e:
        print(f"error: {e}", file=err)
    except ValueError as e:  # the core's validation (ids, roles, actions, patterns)
        print(f"error: {e}", file=err)
    except errors.S3Error as e:  # bucket rules: InvalidBucketName, BucketAlreadyExists...
        print(f"error: {e.code}: {e.message}", file=err)
    return REFUSED


async def _master_key_loader(store: IMetadataStore, path: str) -> Callable[[], bytes]:
    """How the commands that need it load the master key file: created if
    missing only for a store that holds nothing encrypted yet (tenants
    provisioned before the server's first start).  A store written under a
    key whose file is not where the settings say is refused, and no new
    file is left there (a forgotten ``--config`` made one that opened
    nothing)."""
    from lightningstor.core.credentials import holds_secrets, load_or_create_master_key, read_master_key_file

    if await _wait(holds_secrets(store)):

        def existing() -> bytes:
            found = read_master_key_file(path)
            if found is None:
                raise Refused(
                    f"no master key file at {path}, and this store holds secrets written under one: "
                    "is [security] master_key_file the server's (--config)?"
                )
            return found

        return existing
    return lambda: load_or_create_master_key(path)


def _run(command: Command) -> Callable[[argparse.Namespace, TextIO, TextIO], int]:
    """A ``Subcommand.run`` handler: open the server's stores like ``collect``
    and run ``command`` on them."""

    def handler(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        import os

        from lightningstor.admin import _with_stores
        from lightningstor.config import load_settings

        async def work(store: Any, backend: Any) -> int:
            # Settings load again here only after _with_stores loaded them
            # successfully, so this cannot fail differently.
            settings = load_settings(env=os.environ, cli={"config": args.config, "data_dir": args.data_dir})
            master_key = await _master_key_loader(store, settings.security.master_key_file)
            ctx = IamContext(
                store, master_key, region=settings.s3.region,
                default_object_ownership=settings.s3.default_object_ownership,
            )
            return await execute(command, args, out, err, ctx)

        return _with_stores(args, err, work, creates=True)

    return handler


async def run_one(parser: argparse.ArgumentParser, argv: Sequence[str], ctx: IamContext) -> tuple[int, str, str]:
    """Parse and run one identity command on an open context; ``(status,
    stdout, stderr)``.  The store is the session's: a line may not name
    another with ``--config``/``--data-dir``."""
    import io

    out, err = io.StringIO(), io.StringIO()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit:
        return REFUSED, "", f"error: cannot parse {' '.join(argv)!r} (see the usage above)\n"
    command = getattr(args, "iam_command", None)
    if command is None:
        return REFUSED, "", f"error: not an identity command: {' '.join(argv)!r}\n"
    if args.config is not None or args.data_dir is not None:
        return REFUSED, "", "error: give --config/--data-dir once, to the session, not to each command\n"
    status = await execute(command, args, out, err, ctx)
    return status, out.getvalue(), err.getvalue()


def _session(
    config: str | None, data_dir: str | None, err: TextIO, body: Callable[[IamContext], Awaitable[int]]
) -> int:
    """Open the server's stores once (``_with_stores``) and run ``body``
    with an :class:`IamContext` on them; its exit status."""
    import os

    from lightningstor.admin import _with_stores
    from lightningstor.config import load_settings

    def settings() -> Any:
        return load_settings(env=os.environ, cli={"config": config, "data_dir": data_dir})

    async def work(store: Any, backend: Any) -> int:
        # _with_stores has loaded these settings successfully already.
        ctx = IamContext(
            store,
            await _master_key_loader(store, settings().security.master_key_file),
            region=settings().s3.region,
            default_object_ownership=settings().s3.default_object_ownership,
        )
        return await body(ctx)

    return _with_stores(argparse.Namespace(config=config, data_dir=data_dir), err, work, creates=True)


def run_many(
    argvs: Sequence[Sequence[str]], *, config: str | None = None, data_dir: str | None = None,
    err: TextIO,
) -> list[tuple[int, str, str]]:
    """Run several identity commands (``["principal", "create", ...]``, each
    without ``--config``/``--data-dir``) against one opening of the stores.

    Provisioning many principals one process each costs a process start and
    a store opening per line; scripts and tests use this instead.  Returns
    one ``(status, stdout, stderr)`` per command, in order; a command that
    is refused or does not parse gets status 2 and later ones still run.
    Uses the global reactor, so once per process, like every
    ``_with_stores`` command.
    """
    from lightningstor.admin import build_parser

    parser = build_parser()
    results: list[tuple[int, str, str]] = []

    async def body(ctx: IamContext) -> int:
        for argv in argvs:
            results.append(await run_one(parser, argv, ctx))
        return 0

    _session(config, data_dir, err, body)
    return results


def _configure_batch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="the server's TOML configuration file")
    parser.add_argument("--data-dir", default=None, help="the server's data directory (overrides the file)")


def batch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``lightningstor-admin batch``: identity commands from standard input,
    one per line in shell quoting (``principal create alice --org acme``;
    blank lines and ``#`` comments skipped), each answered at once by one
    JSON line ``{"status", "stdout", "stderr"}``.  One store opening for
    the lot, and a script can hold it open and converse with it.  Exit
    status 0 if every command succeeded, 2 otherwise."""
    import shlex
    import sys

    from twisted.internet.threads import deferToThread

    from lightningstor.admin import build_parser

    parser = build_parser()

    async def body(ctx: IamContext) -> int:
        worst = 0
        while True:
            # Waiting for the next line happens off the reactor thread.
            line: str = await deferToThread(sys.stdin.readline)
            if not line:
                return worst
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                argv = shlex.split(line)
            except ValueError as e:
                status, text, problem = REFUSED, "", f"error: {e}\n"
            else:
                status, text, problem = await run_one(parser, argv, ctx)
            worst = max(worst, status)
            print(json.dumps({"status": status, "stdout": text, "stderr": problem}), file=out, flush=True)

    return _session(args.config, args.data_dir, err, body)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="the server's TOML configuration file")
    parser.add_argument("--data-dir", default=None, help="the server's data directory (overrides the file)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _leaf(
    group: Any, name: str, command: Command, help_: str, configure: Callable[[argparse.ArgumentParser], None]
) -> None:
    parser = group.add_parser(name, help=help_, description=help_)
    configure(parser)
    _common(parser)
    parser.set_defaults(handler=_run(command), iam_command=command)


def _dispatch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    handler: Callable[[argparse.Namespace, TextIO, TextIO], int] = args.handler
    return handler(args, out, err)


def _configure_principal(parser: argparse.ArgumentParser) -> None:
    group = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def create(p: argparse.ArgumentParser) -> None:
        p.add_argument("id", help="principal id (letters, digits, '.', '_', '@', '-')")
        p.add_argument("--org", required=True, help="the org it belongs to")
        p.add_argument("--project", default=None, help="the project it belongs to (none: the whole org)")
        p.add_argument("--role", action="append", default=[],
                       help="a role (admin, read-write, read-only, or a custom one); repeatable")
        p.add_argument("--name", default=None, help="display name")

    def one(p: argparse.ArgumentParser) -> None:
        p.add_argument("id", help="principal id")

    def roles(p: argparse.ArgumentParser) -> None:
        p.add_argument("id", help="principal id")
        p.add_argument("--role", action="append", default=[], help="a role; repeatable; replaces the roles")
        p.add_argument("--no-roles", action="store_true", help="remove every role")

    def listing(p: argparse.ArgumentParser) -> None:
        p.add_argument("--org", default=None, help="only this org's principals")

    _leaf(group, "create", principal_create, "create a principal", create)
    _leaf(group, "list", principal_list, "list principals", listing)
    _leaf(group, "disable", principal_disable, "disable a principal (all its keys stop working)", one)
    _leaf(group, "enable", principal_enable, "enable a disabled principal", one)
    _leaf(group, "roles", principal_roles, "replace a principal's roles", roles)


def _configure_key(parser: argparse.ArgumentParser) -> None:
    group = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def create(p: argparse.ArgumentParser) -> None:
        p.add_argument("principal_id", metavar="PRINCIPAL_ID")
        p.add_argument("--expires-in", type=float, default=None, metavar="SECONDS",
                       help="the key stops working this many seconds from now (default: never)")

    def of_principal(p: argparse.ArgumentParser) -> None:
        p.add_argument("principal_id", metavar="PRINCIPAL_ID")

    def one(p: argparse.ArgumentParser) -> None:
        p.add_argument("access_key_id", metavar="ACCESS_KEY_ID")

    _leaf(group, "create", key_create, "create an access key (the secret is shown once)", create)
    _leaf(group, "list", key_list, "list a principal's access keys (never their secrets)", of_principal)
    _leaf(group, "disable", key_disable, "disable an access key", one)
    _leaf(group, "enable", key_enable, "enable a disabled access key", one)
    _leaf(group, "reencrypt", key_reencrypt,
          "re-encrypt every stored secret with the master key file's first key (key rotation)", lambda p: None)

    def adopt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--yes", action="store_true",
                       help="the key that wrote the store is lost for good: forget what only it opened")

    _leaf(group, "adopt-master", key_adopt_master,
          "after losing the master key: make the key file this store's, forgetting the access keys "
          "only the lost key opened", adopt)


def _configure_grant(parser: argparse.ArgumentParser) -> None:
    group = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def subject(p: argparse.ArgumentParser, required: bool) -> None:
        who = p.add_mutually_exclusive_group(required=required)
        who.add_argument("--principal", default=None, help="the principal the grant applies to")
        who.add_argument("--role", default=None, help="the role whose holders it applies to")

    def add(p: argparse.ArgumentParser) -> None:
        subject(p, True)
        p.add_argument("--action", nargs="+", action="extend", required=True,
                       help="actions (lightningstor:objects:get ...; '*' wildcards); repeatable")
        p.add_argument("--resource", nargs="+", action="extend", required=True,
                       help="resource patterns (org/acme/bucket/logs/object/*); repeatable")
        p.add_argument("--deny", action="store_true", help="forbid instead of allow (a deny beats everything)")

    def listing(p: argparse.ArgumentParser) -> None:
        subject(p, False)

    def revoke(p: argparse.ArgumentParser) -> None:
        p.add_argument("grant_id", metavar="GRANT_ID")

    _leaf(group, "add", grant_add, "add a grant; prints its id", add)
    _leaf(group, "list", grant_list, "list grants (all, or of one principal or role)", listing)
    _leaf(group, "revoke", grant_revoke, "remove a grant", revoke)


def _configure_bucket(parser: argparse.ArgumentParser) -> None:
    group = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def create(p: argparse.ArgumentParser) -> None:
        p.add_argument("name", metavar="NAME")
        p.add_argument("--org", required=True)
        p.add_argument("--project", default=None, help="a project bucket (default: org-wide)")
        p.add_argument("--owner", default=None,
                       help="the principal that owns it (default: the org's first org-level admin)")

    def listing(p: argparse.ArgumentParser) -> None:
        p.add_argument("--org", required=True)
        p.add_argument("--project", default=None, help="what this project sees (default: every bucket of the org)")

    _leaf(group, "create", bucket_create, "create an org or project bucket for a tenant", create)
    _leaf(group, "list", bucket_list, "list an org's (or a project's) buckets", listing)


def subcommands() -> dict[str, Subcommand]:
    """The identity subcommands for :data:`lightningstor.admin.SUBCOMMANDS`.

    A function, imported from ``admin`` lazily, so that either module can be
    imported first without a circular-import failure.
    """
    from lightningstor.admin import Subcommand

    return {
        "principal": Subcommand("create, list, disable and enable principals; set their roles",
                                _configure_principal, _dispatch),
        "key": Subcommand("create (secret shown once), list, disable and enable access keys",
                          _configure_key, _dispatch),
        "grant": Subcommand("add, list and revoke grants", _configure_grant, _dispatch),
        "bucket": Subcommand("create and list tenants' org and project buckets", _configure_bucket, _dispatch),
        "batch": Subcommand("run identity commands read from stdin, one per line; a JSON result line each",
                            _configure_batch, batch),
    }
