"""``lightningstor-admin principal|key|grant|bucket`` (lightningstor/admin_iam.py).

Commands run in process on a real SQLite store (the same parser and command
functions the console script uses, without its one-reactor-run-per-process
wrapper); what they store is then checked through the core's own readers
(credential lookup, the local authorizer, bucket resolution), so a command
that printed the right thing but stored the wrong one fails.  Two tests run
the real console entry point in a subprocess, for the store opening and the
master key handling.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography.fernet import Fernet
from twisted.internet import reactor

from lightningstor import admin_iam
from lightningstor.admin import build_parser, main
from lightningstor.admin_iam import IamContext, execute
from lightningstor.authz.grants import GrantStore
from lightningstor.authz.local import LocalAuthorizer
from lightningstor.core import access, keys
from lightningstor.core.access import ResourceRef
from lightningstor.core.buckets import BucketManager
from lightningstor.core.credentials import CredentialStore
from lightningstor.core.types import Principal
from lightningstor.interfaces.metadata import prefix_end
from lightningstor.metadata.sqlite import SqliteMetadataStore

MASTER = Fernet.generate_key()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteMetadataStore]:
    s = SqliteMetadataStore(str(tmp_path / "meta.db"), reactor)
    yield s
    pytest_twisted.blockon(s.close())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ctx(store: SqliteMetadataStore, clock: FakeClock) -> IamContext:
    return IamContext(store, lambda: MASTER, clock=clock)


async def run(ctx: IamContext, *argv: str) -> tuple[int, str, str]:
    """Parse ``argv`` with the console script's parser and run the command."""
    args = build_parser().parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    status = await execute(args.iam_command, args, out, err, ctx)
    return status, out.getvalue(), err.getvalue()


async def ok(ctx: IamContext, *argv: str) -> Any:
    """Run a command that must succeed; its ``--json`` output, decoded."""
    status, out, err = await run(ctx, *argv, "--json")
    assert status == 0, err
    return json.loads(out)


async def refused(ctx: IamContext, *argv: str) -> str:
    status, out, err = await run(ctx, *argv)
    assert status == 2, (out, err)
    assert err.startswith("error: ") and out == ""
    return err


async def snapshot(store: SqliteMetadataStore) -> list[tuple[bytes, bytes]]:
    rows = await store.scan(keys.ROOT, prefix_end(keys.ROOT))
    return [(kv.key, kv.value) for kv in rows]


# -- principals --------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_principal_create_and_list(ctx: IamContext) -> None:
    """create stores org, project, roles (custom ones too) and name; list
    shows them, filtered by org."""
    made = await ok(ctx, "principal", "create", "web-rw", "--org", "acme", "--project", "web",
                    "--role", "read-write", "--role", "auditor", "--name", "Web writer")
    assert made["roles"] == ["read-write", "auditor"] and made["project_id"] == "web"
    await ok(ctx, "principal", "create", "g-admin", "--org", "globex", "--role", "admin")
    everyone = await ok(ctx, "principal", "list")
    assert [p["principal_id"] for p in everyone] == ["g-admin", "web-rw"]
    acme = await ok(ctx, "principal", "list", "--org", "acme")
    assert acme == [made]
    status, text, _ = await run(ctx, "principal", "list", "--org", "acme")
    assert status == 0 and "web-rw" in text and "read-write,auditor" in text and "g-admin" not in text


@pytest_twisted.ensureDeferred
async def test_principal_bad_input_is_refused_and_changes_nothing(
    ctx: IamContext, store: SqliteMetadataStore
) -> None:
    """Invalid ids and roles, a taken id, unknown principals: exit 2, one
    error line, and the store is exactly as before."""
    await ok(ctx, "principal", "create", "alice", "--org", "acme")
    before = await snapshot(store)
    assert "principal id" in await refused(ctx, "principal", "create", "bad/id", "--org", "acme")
    assert "org id" in await refused(ctx, "principal", "create", "bob", "--org", "ac/me")
    assert "role" in await refused(ctx, "principal", "create", "bob", "--org", "acme", "--role", "Admin!")
    assert "already exists" in await refused(ctx, "principal", "create", "alice", "--org", "globex")
    assert "no principal" in await refused(ctx, "principal", "disable", "nobody")
    assert "no principal" in await refused(ctx, "principal", "roles", "nobody", "--role", "admin")
    assert "--role" in await refused(ctx, "principal", "roles", "alice")
    assert await snapshot(store) == before


@pytest_twisted.ensureDeferred
async def test_principal_roles_replace(ctx: IamContext) -> None:
    await ok(ctx, "principal", "create", "alice", "--org", "acme", "--role", "read-only")
    changed = await ok(ctx, "principal", "roles", "alice", "--role", "admin", "--role", "ops")
    assert changed["roles"] == ["admin", "ops"]
    cleared = await ok(ctx, "principal", "roles", "alice", "--no-roles")
    assert cleared["roles"] == []
    assert (await ok(ctx, "principal", "list"))[0]["roles"] == []


@pytest_twisted.ensureDeferred
async def test_disabling_a_principal_stops_its_keys(ctx: IamContext, store: SqliteMetadataStore) -> None:
    """principal disable makes every key of the principal unusable for the
    server's credential lookup; enable restores them."""
    await ok(ctx, "principal", "create", "alice", "--org", "acme", "--role", "admin")
    key = await ok(ctx, "key", "create", "alice")
    lookup = CredentialStore(store, MASTER, cache_ttl=0)
    assert (await lookup.lookup(key["access_key_id"])) is not None
    assert (await ok(ctx, "principal", "disable", "alice"))["disabled"] is True
    assert (await lookup.lookup(key["access_key_id"])) is None
    await ok(ctx, "principal", "enable", "alice")
    assert (await lookup.lookup(key["access_key_id"])) is not None


# -- keys ----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_key_create_shows_the_secret_once_and_stores_it_encrypted(
    ctx: IamContext, store: SqliteMetadataStore
) -> None:
    """The secret printed by key create is the one the server verifies
    signatures with (lookup decrypts it with the master key), it is nowhere
    in the store in plain, and key list never shows it."""
    await ok(ctx, "principal", "create", "web-ro", "--org", "acme", "--project", "web", "--role", "read-only")
    made = await ok(ctx, "key", "create", "web-ro")
    assert made["principal_id"] == "web-ro" and made["org_id"] == "acme" and made["project_id"] == "web"
    assert made["expires_at"] is None and len(made["secret_access_key"]) >= 40
    cred = await CredentialStore(store, MASTER, cache_ttl=0).lookup(made["access_key_id"])
    assert cred is not None and cred.secret == made["secret_access_key"]
    assert cred.principal == Principal("web-ro", "acme", "web", made["access_key_id"], "", ("read-only",))
    raw = b"".join(k + v for k, v in await snapshot(store))
    assert made["secret_access_key"].encode() not in raw
    listed = await ok(ctx, "key", "list", "web-ro")
    assert [k["access_key_id"] for k in listed] == [made["access_key_id"]]
    assert "secret_access_key" not in listed[0] and listed[0]["status"] == "active"
    status, text, _ = await run(ctx, "key", "list", "web-ro")
    assert status == 0 and made["access_key_id"] in text and made["secret_access_key"] not in text
    status, text, _ = await run(ctx, "key", "create", "web-ro")
    assert status == 0 and "secret access key:" in text and "shown only this once" in text


@pytest_twisted.ensureDeferred
async def test_key_expiry(ctx: IamContext, store: SqliteMetadataStore, clock: FakeClock) -> None:
    """--expires-in SECONDS: usable before, refused by lookup after, listed as expired."""
    await ok(ctx, "principal", "create", "temp", "--org", "acme")
    made = await ok(ctx, "key", "create", "temp", "--expires-in", "30")
    assert made["expires_at"] == int((clock.now + 30) * 1000)
    lookup = CredentialStore(store, MASTER, clock=clock, cache_ttl=0)
    assert (await lookup.lookup(made["access_key_id"])) is not None
    clock.now += 31
    assert (await lookup.lookup(made["access_key_id"])) is None
    assert (await ok(ctx, "key", "list", "temp"))[0]["status"] == "expired"
    assert "seconds" in await refused(ctx, "key", "create", "temp", "--expires-in", "0")
    # Past a century, or not finite: refused before anything is stored (1e300
    # was stored, then broke every listing of the principal's keys).
    before = len(await ok(ctx, "key", "list", "temp"))
    for huge in ("1e300", "inf", "nan"):
        assert "at most" in await refused(ctx, "key", "create", "temp", "--expires-in", huge)
    assert len(await ok(ctx, "key", "list", "temp")) == before


@pytest_twisted.ensureDeferred
async def test_key_disable_enable(ctx: IamContext, store: SqliteMetadataStore) -> None:
    await ok(ctx, "principal", "create", "alice", "--org", "acme")
    a = await ok(ctx, "key", "create", "alice")
    b = await ok(ctx, "key", "create", "alice")
    lookup = CredentialStore(store, MASTER, cache_ttl=0)
    assert (await ok(ctx, "key", "disable", a["access_key_id"]))["status"] == "disabled"
    assert (await lookup.lookup(a["access_key_id"])) is None
    assert (await lookup.lookup(b["access_key_id"])) is not None  # only that key
    await ok(ctx, "key", "enable", a["access_key_id"])
    assert (await lookup.lookup(a["access_key_id"])) is not None
    assert "no access key" in await refused(ctx, "key", "disable", "LSNOSUCHKEY")
    assert "no principal" in await refused(ctx, "key", "create", "nobody")


@pytest_twisted.ensureDeferred
async def test_key_create_refuses_a_master_key_that_is_not_the_servers(
    ctx: IamContext, store: SqliteMetadataStore
) -> None:
    """Keys written with another master key would be dead on the server:
    key create refuses when the stored credentials do not decrypt."""
    await ok(ctx, "principal", "create", "alice", "--org", "acme")
    await ok(ctx, "key", "create", "alice")
    other = IamContext(store, Fernet.generate_key, clock=ctx.clock)
    before = await snapshot(store)
    assert "master key" in await refused(other, "key", "create", "alice")
    assert await snapshot(store) == before


# -- grants --------------------------------------------------------------------------------


def _resource(org: str, bucket: str, project: str | None = None) -> ResourceRef:
    return ResourceRef("object", org, project, bucket, "k")


@pytest_twisted.ensureDeferred
async def test_grants_allow_deny_and_revoke(ctx: IamContext, store: SqliteMetadataStore) -> None:
    """A grant added by the CLI is what the local authorizer decides by: an
    allow grant lets a role-less principal act, a role grant reaches the
    role's holders, a deny grant beats the role, revoke takes it away."""
    await ok(ctx, "principal", "create", "p", "--org", "acme")
    await ok(ctx, "principal", "create", "rw", "--org", "acme", "--role", "read-write")
    authz = LocalAuthorizer(GrantStore(store, time.time), time.time, 0)
    p = Principal("p", "acme")
    rw = Principal("rw", "acme", roles=("read-write",))
    logs = _resource("acme", "logs")
    assert not await authz.authorize(p, access.OBJECTS_GET, logs)
    allow = await ok(ctx, "grant", "add", "--principal", "p", "--action", access.OBJECTS_GET,
                     "--resource", "org/acme/bucket/logs/*")
    assert allow["effect"] == "allow" and allow["subject"] == "principal:p"
    assert await authz.authorize(p, access.OBJECTS_GET, logs)
    assert not await authz.authorize(p, access.OBJECTS_PUT, logs)
    assert not await authz.authorize(p, access.OBJECTS_GET, _resource("acme", "other"))
    assert await authz.authorize(rw, access.OBJECTS_DELETE, logs)
    deny = await ok(ctx, "grant", "add", "--role", "read-write", "--action", "lightningstor:objects:delete",
                    "--resource", "org/acme/*", "--deny")
    assert deny["effect"] == "deny"
    assert not await authz.authorize(rw, access.OBJECTS_DELETE, logs)
    assert await authz.authorize(rw, access.OBJECTS_PUT, logs)
    listed = await ok(ctx, "grant", "list")
    assert {g["grant_id"] for g in listed} == {allow["grant_id"], deny["grant_id"]}
    assert [g["grant_id"] for g in await ok(ctx, "grant", "list", "--principal", "p")] == [allow["grant_id"]]
    assert [g["grant_id"] for g in await ok(ctx, "grant", "list", "--role", "read-write")] == [deny["grant_id"]]
    await ok(ctx, "grant", "revoke", deny["grant_id"])
    assert await authz.authorize(rw, access.OBJECTS_DELETE, logs)
    status, text, _ = await run(ctx, "grant", "add", "--principal", "p", "--action", access.OBJECTS_LIST,
                                access.OBJECTS_GET, "--resource", "org/acme/*")
    assert status == 0 and text.strip().startswith("g")  # the plain output is the grant id
    assert "no grant" in await refused(ctx, "grant", "revoke", deny["grant_id"])


@pytest_twisted.ensureDeferred
async def test_grant_bad_input_is_refused(ctx: IamContext, store: SqliteMetadataStore) -> None:
    await ok(ctx, "principal", "create", "p", "--org", "acme")
    before = await snapshot(store)
    good = ["--resource", "org/acme/*"]
    assert "matches none" in await refused(
        ctx, "grant", "add", "--principal", "p", "--action", "lightningstor:object:get", *good)
    assert "org/" in await refused(
        ctx, "grant", "add", "--principal", "p", "--action", access.OBJECTS_GET, "--resource", "acme/*")
    assert "no principal" in await refused(
        ctx, "grant", "add", "--principal", "ghost", "--action", access.OBJECTS_GET, *good)
    assert "role" in await refused(
        ctx, "grant", "add", "--role", "Bad Role", "--action", access.OBJECTS_GET, *good)
    assert await snapshot(store) == before
    # No subject at all is a usage error from the parser (exit 2 too).
    assert main(["grant", "add", "--action", access.OBJECTS_GET, *good]) == 2


# -- buckets -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_bucket_create_for_tenants(ctx: IamContext, store: SqliteMetadataStore) -> None:
    """Org and project buckets land in their scope (two orgs may both have
    ``backups``), owned by --owner or by the org's admin; a project sees its
    own and the org's buckets, not another project's."""
    await ok(ctx, "principal", "create", "acme-admin", "--org", "acme", "--role", "admin")
    await ok(ctx, "principal", "create", "globex-admin", "--org", "globex", "--role", "admin")
    await ok(ctx, "principal", "create", "web-rw", "--org", "acme", "--project", "web", "--role", "read-write")
    a = await ok(ctx, "bucket", "create", "backups", "--org", "acme")
    assert (a["org_id"], a["project_id"], a["owner"]) == ("acme", None, "acme-admin")
    g = await ok(ctx, "bucket", "create", "backups", "--org", "globex")
    assert (g["org_id"], g["owner"]) == ("globex", "globex-admin")
    w = await ok(ctx, "bucket", "create", "site", "--org", "acme", "--project", "web", "--owner", "web-rw")
    assert (w["project_id"], w["owner"]) == ("web", "web-rw")
    d = await ok(ctx, "bucket", "create", "warehouse", "--org", "acme", "--project", "data")
    assert (d["project_id"], d["owner"]) == ("data", "acme-admin")

    buckets = BucketManager(store, time.time, "us-east-1")
    web = Principal("web-rw", "acme", "web")
    assert [b.name for b in await buckets.list(web)] == ["backups", "site"]
    theirs = await buckets.get(Principal("x", "globex"), "backups")
    ours = await buckets.get(web, "backups")
    assert (theirs.org_id, ours.org_id) == ("globex", "acme") and theirs.bucket_id != ours.bucket_id
    assert await buckets.find(web, "warehouse") is None
    every = await ok(ctx, "bucket", "list", "--org", "acme")
    assert [(b["name"], b["project_id"]) for b in every] == [
        ("backups", None), ("warehouse", "data"), ("site", "web")]
    seen = await ok(ctx, "bucket", "list", "--org", "acme", "--project", "web")
    assert [b["name"] for b in seen] == ["backups", "site"]


@pytest_twisted.ensureDeferred
async def test_bucket_create_refusals(ctx: IamContext, store: SqliteMetadataStore) -> None:
    """The owner must be able to hold the bucket; names follow S3 rules and
    are unique in their scope; an org without an admin needs --owner."""
    await ok(ctx, "principal", "create", "acme-admin", "--org", "acme", "--role", "admin")
    await ok(ctx, "principal", "create", "web-rw", "--org", "acme", "--project", "web")
    await ok(ctx, "principal", "create", "globex-admin", "--org", "globex", "--role", "admin")
    await ok(ctx, "bucket", "create", "backups", "--org", "acme")
    before = await snapshot(store)
    assert "not acme" in await refused(ctx, "bucket", "create", "b1", "--org", "acme", "--owner", "globex-admin")
    assert "project web" in await refused(ctx, "bucket", "create", "b1", "--org", "acme", "--owner", "web-rw")
    assert "project web" in await refused(
        ctx, "bucket", "create", "b1", "--org", "acme", "--project", "data", "--owner", "web-rw")
    assert "--owner" in await refused(ctx, "bucket", "create", "b1", "--org", "initech")
    assert "InvalidBucketName" in await refused(ctx, "bucket", "create", "Bad_Name", "--org", "acme")
    assert "BucketAlready" in await refused(ctx, "bucket", "create", "backups", "--org", "acme")
    assert await snapshot(store) == before


# -- the console script --------------------------------------------------------------------


def _admin(data: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lightningstor.admin", *argv, "--data-dir", str(data)],
        capture_output=True, text=True, timeout=60, cwd=str(data.parent),
        env={k: v for k, v in os.environ.items() if not k.startswith("LIGHTNINGSTOR_")},
    )


@pytest_twisted.ensureDeferred
async def test_console_script_uses_the_servers_master_key(tmp_path: Path) -> None:
    """Through the real entry point: the master key file is created once in
    the data dir and then loaded, never replaced, and the printed secret is
    the one stored (encrypted with that file's key)."""
    data = tmp_path / "data"
    assert _admin(data, "principal", "create", "alice", "--org", "acme").returncode == 0
    first = _admin(data, "key", "create", "alice", "--json")
    assert first.returncode == 0, first.stderr
    master = (data / "master.key").read_bytes()
    second = _admin(data, "key", "create", "alice", "--json")
    assert second.returncode == 0, second.stderr
    assert (data / "master.key").read_bytes() == master
    bad = _admin(data, "grant", "add", "--principal", "alice", "--action", "nope", "--resource", "org/acme/*")
    assert bad.returncode == 2 and "error: action 'nope'" in bad.stderr

    s = SqliteMetadataStore(str(data / "metadata.db"), reactor)
    try:
        stored = [c.secret for c in await CredentialStore(s, master.strip(), cache_ttl=0).list_keys("alice")]
    finally:
        await s.close()
    assert sorted(stored) == sorted(json.loads(r.stdout)["secret_access_key"] for r in (first, second))


def test_console_script_makes_no_key_file_for_a_store_written_under_one(tmp_path: Path) -> None:
    """A store that holds secrets and no key file where the settings say (a
    forgotten --config): refused, and no new file is left there.  An empty
    store still gets one (tenants provisioned before the first start)."""
    data = tmp_path / "data"
    assert _admin(data, "principal", "create", "alice", "--org", "acme").returncode == 0
    assert _admin(data, "key", "create", "alice", "--json").returncode == 0
    key_file = data / "master.key"
    kept = key_file.read_bytes()
    key_file.unlink()
    refused = _admin(data, "key", "create", "alice", "--json")
    assert refused.returncode == 2, refused.stderr
    assert f"no master key file at {key_file}" in refused.stderr
    assert not key_file.exists()
    key_file.write_bytes(kept)
    assert _admin(data, "key", "create", "alice", "--json").returncode == 0


def test_run_many_shares_one_store_opening(tmp_path: Path) -> None:
    """admin_iam.run_many (provisioning scripts): every command runs, in
    order, a bad one is refused without stopping the rest."""
    data = tmp_path / "data"
    script = (
        "import json, sys\n"
        "from lightningstor.admin_iam import run_many\n"
        "cmds = json.load(sys.stdin)\n"
        "print(json.dumps(run_many(cmds, data_dir=sys.argv[1], err=sys.stderr)))\n"
    )
    cmds = [
        ["principal", "create", "alice", "--org", "acme"],
        ["principal", "create", "alice", "--org", "acme"],
        ["key", "create", "alice", "--json"],
        ["principal", "list", "--json"],
        ["collect"],
    ]
    proc = subprocess.run([sys.executable, "-c", script, str(data)], input=json.dumps(cmds),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r[0] for r in results] == [0, 2, 0, 0, 2]
    assert "already exists" in results[1][2]
    assert json.loads(results[2][1])["principal_id"] == "alice"
    assert [p["principal_id"] for p in json.loads(results[3][1])] == ["alice"]


def test_admin_iam_module_imports_first() -> None:
    """Either module may be imported first (no circular-import failure)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import lightningstor.admin_iam as m, lightningstor.admin as a;"
         "assert set(m.subcommands()) <= set(a.SUBCOMMANDS)"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert admin_iam.REFUSED == 2


def test_batch_answers_each_line(tmp_path: Path) -> None:
    """``lightningstor-admin batch``: one JSON answer per command line (comments
    and blank lines skipped), refusals do not stop the rest, exit 2 if any
    command was refused; a line naming another store is refused."""
    data = tmp_path / "data"
    lines = "\n".join([
        "# provisioning",
        "principal create alice --org acme --role admin --name 'Alice A'",
        "",
        "principal create alice --org acme",
        "key create alice --json",
        f"principal list --data-dir {tmp_path / 'elsewhere'}",
        "principal list --json",
    ]) + "\n"
    proc = subprocess.run(
        [sys.executable, "-m", "lightningstor.admin", "batch", "--data-dir", str(data)],
        input=lines, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("LIGHTNINGSTOR_")},
    )
    assert proc.returncode == 2, proc.stderr
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [a["status"] for a in answers] == [0, 2, 0, 2, 0]
    assert "already exists" in answers[1]["stderr"] and "--data-dir" in answers[3]["stderr"]
    assert json.loads(answers[2]["stdout"])["principal_id"] == "alice"
    listed = json.loads(answers[4]["stdout"])
    assert [(p["principal_id"], p["display_name"]) for p in listed] == [("alice", "Alice A")]
    assert not (tmp_path / "elsewhere").exists()


@pytest_twisted.ensureDeferred
async def test_master_key_rotation_through_the_console_script(tmp_path: Path) -> None:
    """Rotation as docs/access-control.md describes it: a new key on the first
    line of the master key file, the old one kept below; ``key reencrypt``
    rewrites every secret with the new key; after that the old line can go,
    and every key still resolves to its secret.  Before ``reencrypt`` the
    old key is still needed (the test proves it by removing it too early)."""
    data = tmp_path / "data"
    assert _admin(data, "principal", "create", "alice", "--org", "acme").returncode == 0
    created = [json.loads(_admin(data, "key", "create", "alice", "--json").stdout) for _ in range(3)]
    key_file = data / "master.key"
    old = key_file.read_bytes().strip()
    new = Fernet.generate_key()

    key_file.write_bytes(new + b"\n")  # too early: the stored secrets need the old key
    listing = _admin(data, "key", "list", "alice", "--json")
    assert listing.returncode != 0 and "cannot be decrypted" in listing.stderr + listing.stdout

    key_file.write_bytes(new + b"\n" + old + b"\n")
    done = _admin(data, "key", "reencrypt", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"reencrypted": 3}

    key_file.write_bytes(new + b"\n")
    listing = _admin(data, "key", "list", "alice", "--json")
    assert listing.returncode == 0, listing.stderr
    assert sorted(k["access_key_id"] for k in json.loads(listing.stdout)) == sorted(
        c["access_key_id"] for c in created
    )

    async def secrets() -> dict[str, str]:
        store = SqliteMetadataStore(str(data / "metadata.db"), reactor)
        try:
            creds = CredentialStore(store, new, cache_ttl=0)
            out = {}
            for c in created:
                cred = await creds.get(c["access_key_id"])
                out[c["access_key_id"]] = cred.secret
            return out
        finally:
            await store.close()

    assert await secrets() == {c["access_key_id"]: c["secret_access_key"] for c in created}
