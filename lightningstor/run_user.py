"""The user the server runs as when twistd switches user (``--uid``/``--gid``).

twistd builds the service (``makeService``), opens the log file and binds
the ports as the user that started it, usually root, and only then switches
to the user of ``--uid``/``--gid``.  What the server creates before the
switch (the data directory, the master key, the audit log, the log file)
would therefore belong to root, and the server could no longer write to it,
or even read its own key, once it runs as the other user.  The same user
then runs the worker processes, with the Python interpreter this process
was started with.

So, when twistd will switch user: :func:`check_run_user` refuses, with one
line and before anything is created, a data directory that user could not
write, files it could not read again (the master key, the config file, the
TLS files) and an interpreter it could not run; :class:`CreatedPaths` gives
what the server creates before the switch to that user.  Nothing here
changes anything when twistd does not switch user.
"""

from __future__ import annotations

import os
import pwd
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from lightningstor.errors import ConfigError


@dataclass(frozen=True)
class RunUser:
    """Who twistd makes this process once the service is built."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str
    # In the user database: twistd looks the user up to set its groups, and
    # stops with a traceback for a uid that is not there.
    known: bool = True

    def __str__(self) -> str:
        if not self.known:
            return f"{self.name} (gid {self.gid})"
        return f"{self.name} (uid {self.uid}, gid {self.gid})"


def run_user(twistd_options: Any) -> RunUser | None:
    """The user twistd will switch to after ``makeService``, or None when it
    will not: no ``--uid``/``--gid``, or a process that is not root (twistd
    then stops with its own message, and nothing here could change owners).
    Follows twistd's own rules: ``--uid`` alone takes that user's group."""
    if twistd_options is None or os.geteuid() != 0:
        return None
    uid, gid = twistd_options.get("uid"), twistd_options.get("gid")
    if uid is None and gid is None:
        return None
    if uid is None:
        uid = os.getuid()
    try:
        entry: pwd.struct_passwd | None = pwd.getpwuid(uid)
    except KeyError:
        entry = None
    if gid is None:
        # twistd: "if uid is not None and gid is None: gid = pw_gid".
        gid = entry.pw_gid if entry is not None else os.getgid()
    # twistd's switchUID calls initgroups for the user: the groups it gets.
    groups = tuple(os.getgrouplist(entry.pw_name, gid)) if entry is not None else (gid,)
    if entry is None:
        return RunUser(uid=uid, gid=gid, groups=groups, name=f"uid {uid}", known=False)
    return RunUser(uid=uid, gid=gid, groups=groups, name=entry.pw_name)


@contextmanager
def acting_as(user: RunUser) -> Iterator[None]:
    """Take the user's effective ids and groups for the block, so that
    ``os.access(..., effective_ids=True)`` answers for that user, ACLs
    included.  Only while the service is built: one thread, still root."""
    groups = os.getgroups()
    egid = os.getegid()
    os.setgroups(list(user.groups))
    os.setegid(user.gid)
    os.seteuid(user.uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(egid)
        os.setgroups(groups)


def _can(path: str, mode: int) -> bool:
    return os.access(path, mode, effective_ids=True)


def files_to_read(settings: Any) -> list[tuple[str, str]]:
    """``(what, path)`` of the files the server reads again after the
    switch: the master key and the config file (each worker reads them at
    its start), the TLS files (each worker loads them, and SIGHUP reloads
    them)."""
    found = [("the master key", settings.security.master_key_file)]
    if settings.config_file:
        found.append(("the config file", settings.config_file))
    tls = settings.server.tls
    if tls is not None:
        found += [("the TLS certificate", tls.cert_file), ("the TLS key", tls.key_file)]
        if tls.ca_file:
            found.append(("the TLS CA file", tls.ca_file))
    return found


def check_run_user(
    user: RunUser,
    data_dir: str,
    readable: Sequence[tuple[str, str]],
    interpreter: str = sys.executable,
    modules: Sequence[str] | None = None,
) -> None:
    """Refuse to start (``ConfigError``, one line) when the user twistd will
    switch to could not use what the server needs: an existing data
    directory it cannot write, an existing file of ``readable`` (``(what,
    path)``, :func:`files_to_read`) it cannot read, or an interpreter and
    modules it cannot run (the workers are started with this interpreter,
    as that user).  What does not exist yet is created and handed over
    (:class:`CreatedPaths`)."""
    def nearest_existing(path: str) -> str:
        path = os.path.abspath(path)
        while not os.path.lexists(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)
        return path

    if not user.known:
        raise ConfigError(f"--uid/--gid: {user} is not in the user database (twistd needs it to set the groups)")
    # Looked up as root: what the user cannot see is still there.
    data_exists = os.path.isdir(data_dir)
    existing = [(what, path) for what, path in readable if os.path.exists(path)]
    reach = nearest_existing(data_dir)
    if modules is None:
        # Where this package is imported from, and the standard library.
        modules = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(os.__file__)]
    problem = None
    with acting_as(user):
        if data_exists and not _can(data_dir, os.W_OK | os.X_OK):
            problem = f"cannot write the data directory {data_dir}; chown it to that user"
        elif not data_exists and not _can(reach, os.X_OK):
            problem = f"cannot reach {reach}, where the data directory {data_dir} would be created"
        elif unreadable := [(what, path) for what, path in existing if not _can(path, os.R_OK)]:
            what, path = unreadable[0]
            problem = f"cannot read {what} {path}; make it readable by that user"
        elif not _can(interpreter, os.X_OK):
            problem = f"cannot run the Python interpreter {interpreter}; install the server where that user can run it"
        else:
            hidden = [m for m in modules if not _can(m, os.R_OK | os.X_OK)]
            if hidden:
                problem = f"cannot read the Python modules in {hidden[0]}; install the server where that user can read them"
    if problem is not None:
        raise ConfigError(f"--uid/--gid: {user} {problem}")


def unprivileged_port_start() -> int:
    """The lowest port a process that is not root may bind (Linux's
    ``net.ipv4.ip_unprivileged_port_start``; 1024 where it is not there)."""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1024


def check_worker_grpc_port(user: RunUser, grpc_port: int | None, start: int | None = None) -> None:
    """Refuse a gRPC port the workers could not bind: with several workers
    each one binds the gRPC port itself, beside the supervisor, after the
    switch (the S3 and metrics ports are bound before it and handed down)."""
    start = unprivileged_port_start() if start is None else start
    if grpc_port is not None and 0 < grpc_port < start:
        raise ConfigError(
            f"--uid/--gid: each worker binds the gRPC port {grpc_port} as {user}, who may not bind ports "
            f"under {start}; choose a gRPC port from {start}, or one worker (--workers 1)"
        )


class CreatedPaths:
    """Paths that do not exist yet (and their missing parent directories),
    noted before the service is built, so that :meth:`hand_over` can give
    the ones the build created to the run user, and only those: an existing
    file keeps its owner."""

    def __init__(self, user: RunUser, paths: Iterable[str]) -> None:
        self.user = user
        self.missing: list[str] = []
        for path in paths:
            path = os.path.abspath(path)
            while not os.path.lexists(path) and path not in self.missing:
                self.missing.append(path)
                parent = os.path.dirname(path)
                if parent == path:
                    break
                path = parent

    def hand_over(self) -> None:
        """Give each noted path that now exists to the run user."""
        for path in self.missing:
            if os.path.lexists(path):
                os.lchown(path, self.user.uid, self.user.gid)
