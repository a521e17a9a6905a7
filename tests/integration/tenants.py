"""Tenants for integration tests: principals, keys and grants provisioned
through ``lightningstor-admin`` against a running server's own data.

The admin commands open the server's metadata store with the server's
config and data dir while it runs, exactly as an operator would.  Many
commands go through one long-lived ``lightningstor-admin batch`` process
(:class:`AdminSession`: one store opening, a command line in, a JSON result
line out), since a process per command costs seconds; :meth:`Tenancy.admin`
runs the console script once per command, as an operator types it.

Typical use::

    tenancy = Tenancy.start(tmp_path_factory.mktemp("tenancy"), cache_seconds=0.5)
    ids = tenancy.provision([
        Spec("acme-admin", "acme", roles=("admin",)),
        Spec("web-ro", "acme", "web", roles=("read-only",)),
    ])
    s3 = ids["web-ro"].s3(tenancy.server.endpoint)
"""

from __future__ import annotations

import json
import os
import select
import shlex
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from lightningstor.client import LightningStorClient
from lightningstor.core import access
from tests.integration.server import ServerProcess


def _env() -> dict[str, str]:
    # The server's own environment overrides are not the admin's business.
    return {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNINGSTOR_")}


def _admin_script() -> str:
    return str(Path(sys.executable).with_name("lightningstor-admin"))


class AdminError(AssertionError):
    """An admin command that had to succeed did not."""


@dataclass(frozen=True)
class Spec:
    """A principal to create: id, org, project, roles, and grants as
    ``(actions, resources, effect)``; ``name`` its display name."""

    principal_id: str
    org: str
    project: str | None = None
    roles: tuple[str, ...] = ()
    grants: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = ()
    expires_in: float | None = None
    name: str = ""


@dataclass
class Identity:
    """One principal and one of its access keys, as ``key create --json`` printed it."""

    principal_id: str
    org: str
    project: str | None
    access_key: str
    secret_key: str
    grant_ids: list[str] = field(default_factory=list)

    def s3(self, endpoint: str, **config: Any) -> Any:
        """A boto3 S3 client signing with this identity's key (path style, no retries)."""
        cfg = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
            **config,
        )
        return boto3.client(
            "s3", endpoint_url=endpoint, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name="us-east-1", config=cfg,
        )

    def grpc(self, endpoint: str) -> LightningStorClient:
        """A gRPC client with this identity's key (``endpoint``: host:port)."""
        return LightningStorClient.connect(
            f"grpc://{endpoint}", access_key=self.access_key, secret_key=self.secret_key, timeout=30
        )


class AdminSession:
    """``lightningstor-admin batch`` held open: one command line in, one
    JSON result line out, the store opened once for the whole session."""

    def __init__(self, config: Path, data_dir: Path) -> None:
        # argparse's usage messages go to stderr: a file, never a pipe nobody drains.
        self._log = open(config.with_name("admin-batch.log"), "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [_admin_script(), "batch", "--config", str(config), "--data-dir", str(data_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, env=_env(),
        )

    def run(self, argv: Sequence[str], timeout: float = 60.0) -> tuple[int, str, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(shlex.join(argv) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            raise AdminError(f"lightningstor-admin batch gave no answer to {argv!r}")
        result = json.loads(line)
        return int(result["status"]), str(result["stdout"]), str(result["stderr"])

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Tenancy:
    """A server started with a config file, and the admin CLI pointed at the
    same config and data dir."""

    def __init__(self, server: ServerProcess, config: Path) -> None:
        self.server = server
        self.config = config
        self._session: AdminSession | None = None

    @classmethod
    def start(cls, base: Path, *, cache_seconds: float = 0.5, extra_config: str = "") -> Tenancy:
        """Start a server whose ``[iam] cache_seconds`` is short, so admin
        changes reach it quickly (the point of several tests)."""
        data = base / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = base / "server.toml"
        config.write_text(f"[iam]\ncache_seconds = {cache_seconds}\n{extra_config}")
        return cls(ServerProcess(data, config=str(config)).start(), config)

    def stop(self) -> None:
        if self._session is not None:
            self._session.close()
        self.server.stop()

    @property
    def _where(self) -> list[str]:
        return ["--config", str(self.config), "--data-dir", str(self.server.data_dir)]

    def admin(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the real ``lightningstor-admin`` console script once."""
        proc = subprocess.run([_admin_script(), *argv, *self._where], capture_output=True, text=True,
                              timeout=120, env=_env())
        if check and proc.returncode != 0:
            raise AdminError(f"lightningstor-admin {' '.join(argv)}: {proc.returncode}\n{proc.stderr}")
        return proc

    def batch(self, commands: Sequence[Sequence[str]], *, check: bool = True) -> list[tuple[int, str, str]]:
        """Run identity commands through one long-lived ``lightningstor-admin
        batch`` process; one ``(status, stdout, stderr)`` each."""
        if self._session is None:
            self._session = AdminSession(self.config, self.server.data_dir)
        results = [self._session.run(c) for c in commands]
        if check:
            for command, (status, _out, err) in zip(commands, results):
                if status != 0:
                    raise AdminError(f"lightningstor-admin {' '.join(command)}: {status}\n{err}")
        return results

    def cli(self, *argv: str, check: bool = True) -> tuple[int, str, str]:
        """One identity command through the batch session (milliseconds,
        where :meth:`admin` costs a process start)."""
        return self.batch([argv], check=check)[0]

    def provision(self, specs: Iterable[Spec]) -> dict[str, Identity]:
        """Create each principal, one access key for it and its grants, all
        in one admin run; the identities by principal id."""
        specs = list(specs)
        commands: list[list[str]] = []
        for s in specs:
            cmd = ["principal", "create", s.principal_id, "--org", s.org]
            if s.project:
                cmd += ["--project", s.project]
            for role in s.roles:
                cmd += ["--role", role]
            if s.name:
                cmd += ["--name", s.name]
            commands.append(cmd)
            key = ["key", "create", s.principal_id, "--json"]
            if s.expires_in is not None:
                key += ["--expires-in", str(s.expires_in)]
            commands.append(key)
            for actions, resources, effect in s.grants:
                grant = ["grant", "add", "--principal", s.principal_id, "--action", *actions,
                         "--resource", *resources, "--json"]
                if effect == "deny":
                    grant.append("--deny")
                commands.append(grant)
        results = iter(self.batch(commands))
        out: dict[str, Identity] = {}
        for s in specs:
            next(results)
            key = json.loads(next(results)[1])
            ident = Identity(s.principal_id, s.org, s.project, key["access_key_id"], key["secret_access_key"])
            for _grant in s.grants:
                ident.grant_ids.append(json.loads(next(results)[1])["grant_id"])
            out[s.principal_id] = ident
        return out

    def new_key(self, principal_id: str, *, expires_in: float | None = None) -> Identity:
        """Another access key for an existing principal."""
        argv = ["key", "create", principal_id, "--json"]
        if expires_in is not None:
            argv += ["--expires-in", str(expires_in)]
        key = json.loads(self.cli(*argv)[1])
        return Identity(principal_id, key["org_id"], key["project_id"], key["access_key_id"],
                        key["secret_access_key"])


# The cast both tenancy suites (S3 and gRPC) provision: two orgs, two
# projects in acme, the built-in roles, and one principal per SPEC §7.3
# action that holds only an allow grant of it ("only-objects-get") or an
# admin with a deny grant of it ("deny-objects-get").
ACME_ALL = ("org/acme", "org/acme/*")
SHORT = {a: a.split(":", 1)[1].replace(":", "-") for a in access.ACTIONS}  # objects-get ...


def s3_clients(tenancy: Tenancy, ids: dict[str, Identity]) -> Any:
    """``get(principal_id)``: that principal's boto3 client for the server's
    current endpoint, made once per endpoint (the ``s3`` fixture of the
    tenancy tests; a restart moves the server to another port)."""
    clients: dict[tuple[str, str], Any] = {}

    def get(principal_id: str) -> Any:
        where = (principal_id, tenancy.server.endpoint)
        if where not in clients:
            clients[where] = ids[principal_id].s3(tenancy.server.endpoint)
        return clients[where]

    return get


def standard_specs() -> list[Spec]:
    specs = [
        Spec("acme-admin", "acme", roles=("admin",)),
        Spec("web-admin", "acme", "web", roles=("admin",)),
        Spec("web-rw", "acme", "web", roles=("read-write",)),
        Spec("web-ro", "acme", "web", roles=("read-only",)),
        Spec("data-admin", "acme", "data", roles=("admin",)),
        Spec("data-rw", "acme", "data", roles=("read-write",)),
        Spec("globex-admin", "globex", roles=("admin",)),
        Spec("globex-rw", "globex", roles=("read-write",)),
        Spec("acme-nobody", "acme"),
        Spec("acme-temp", "acme", roles=("read-write",)),
        Spec("acme-creator", "acme", grants=(((access.BUCKETS_CREATE,), ("org/acme/bucket/*",), "allow"),)),
        Spec("copy-and-get", "acme", grants=(((access.OBJECTS_COPY, access.OBJECTS_GET), ACME_ALL, "allow"),)),
    ]
    for action in access.ACTIONS:
        specs.append(Spec(f"only-{SHORT[action]}", "acme", grants=(((action,), ACME_ALL, "allow"),)))
        specs.append(Spec(f"deny-{SHORT[action]}", "acme", roles=("admin",),
                          grants=(((action,), ACME_ALL, "deny"),)))
    return specs
