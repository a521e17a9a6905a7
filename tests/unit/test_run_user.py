"""The user twistd switches to (``--uid``/``--gid``): who it is, what the
server refuses before the switch, and what it hands over (lightningstor.run_user).

Most of these change owners and effective ids, so they need root; the
integration tests (test_run_user.py there) run the real daemon that way.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lightningstor.config import load_settings
from lightningstor.errors import ConfigError
from lightningstor.run_user import CreatedPaths, RunUser, acting_as, check_run_user, files_to_read, run_user

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changes owners and effective ids: needs root")


def _nobody() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody")


@pytest.fixture
def user() -> RunUser:
    """The user ``nobody`` as twistd's ``--uid nobody`` would make it."""
    if os.geteuid() != 0:
        pytest.skip("changes owners and effective ids: needs root")
    found = run_user({"uid": _nobody().pw_uid, "gid": None})
    assert found is not None
    return found


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A directory every user can reach (pytest's own temporary directories
    are private to their owner)."""
    path = Path(tempfile.mkdtemp(prefix="lightningstor-run-user-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_no_switch_without_uid_or_gid() -> None:
    assert run_user(None) is None
    assert run_user({"uid": None, "gid": None}) is None


def test_no_switch_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """twistd itself stops a non-root process given --uid ("are you root?");
    nothing is checked or handed over before that."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert run_user({"uid": 65534, "gid": None}) is None


@needs_root
def test_uid_alone_takes_that_users_group_as_twistd_does() -> None:
    nobody = _nobody()
    user = run_user({"uid": nobody.pw_uid, "gid": None})
    assert user is not None
    assert (user.uid, user.gid, user.name) == (nobody.pw_uid, nobody.pw_gid, "nobody")
    assert nobody.pw_gid in user.groups
    assert "nobody (uid" in str(user)


@needs_root
def test_a_uid_not_in_the_user_database_is_refused(reachable: Path) -> None:
    """twistd looks the user up to set its groups and stops with a
    traceback for a uid that is not there: refused first, with one line."""
    taken = {entry.pw_uid for entry in pwd.getpwall()}
    uid = next(n for n in range(54321, 60000) if n not in taken)
    user = run_user({"uid": uid, "gid": 54321})
    assert user is not None and not user.known
    with pytest.raises(ConfigError, match=f"^--uid/--gid: uid {uid} \\(gid 54321\\) is not in the user database"):
        _check(user, reachable / "data", interpreter=_runnable(reachable), modules=[])


@needs_root
def test_gid_alone_keeps_the_uid() -> None:
    user = run_user({"uid": None, "gid": 65534})
    assert user is not None
    assert (user.uid, user.gid) == (os.getuid(), 65534)


@needs_root
def test_acting_as_answers_for_the_user_and_restores_root(reachable: Path, user: RunUser) -> None:
    private = reachable / "private"
    private.mkdir(mode=0o700)
    with acting_as(user):
        assert os.geteuid() == user.uid
        assert not os.access(private, os.W_OK, effective_ids=True)
    assert (os.geteuid(), os.getegid()) == (0, 0)
    assert os.access(private, os.W_OK, effective_ids=True)


@needs_root
def test_created_paths_hands_over_what_was_created_and_nothing_else(reachable: Path, user: RunUser) -> None:
    """The build may create a file and its missing parents: those go to the
    run user; an existing directory keeps its owner."""
    existing = reachable / "existing"
    existing.mkdir()
    key = existing / "a" / "b" / "master.key"
    created = CreatedPaths(user, [str(key), str(existing)])
    assert created.missing == [str(key), str(key.parent), str(key.parent.parent)]
    key.parent.mkdir(parents=True)
    key.write_bytes(b"k")
    created.hand_over()
    for path in (key, key.parent, key.parent.parent):
        assert (path.stat().st_uid, path.stat().st_gid) == (user.uid, user.gid)
    assert existing.stat().st_uid == 0


@needs_root
def test_a_data_directory_the_user_cannot_write_is_refused(reachable: Path, user: RunUser) -> None:
    data = reachable / "data"
    data.mkdir(mode=0o755)
    with pytest.raises(ConfigError, match=f"cannot write the data directory {data}; chown it"):
        _check(user, data, interpreter=sys.executable, modules=[])
    os.chown(data, user.uid, user.gid)
    _check(user, data, interpreter=_runnable(reachable), modules=[])


@needs_root
def test_a_missing_data_directory_must_be_reachable(reachable: Path, user: RunUser) -> None:
    private = reachable / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match=f"cannot reach {private}, where the data directory"):
        _check(user, private / "data", modules=[])
    # Reachable: created later, then handed over.
    _check(user, reachable / "new", interpreter=_runnable(reachable), modules=[])


@needs_root
@pytest.mark.parametrize("what", ["the master key", "the config file", "the TLS key"])
def test_a_file_only_root_reads_is_refused(reachable: Path, what: str, user: RunUser) -> None:
    """Each worker reads the master key, the config file and the TLS files
    at its start, as the run user (and SIGHUP reloads the TLS files)."""
    data = reachable / "data"
    data.mkdir()
    os.chown(data, user.uid, user.gid)
    secret = reachable / "secret"
    secret.write_bytes(b"k")
    secret.chmod(0o600)
    files = [("the master key", str(data / "master.key")), (what, str(secret))]
    with pytest.raises(ConfigError, match=f"cannot read {what} {secret}; make it readable by that user"):
        check_run_user(user, str(data), files, interpreter=_runnable(reachable), modules=[])
    secret.chmod(0o644)
    check_run_user(user, str(data), files, interpreter=_runnable(reachable), modules=[])


def test_the_files_read_after_the_switch(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text('[server.tls]\ncert_file = "/etc/c.pem"\nkey_file = "/etc/k.pem"\n')
    settings = load_settings(env={}, cli={"config": str(config), "data_dir": str(tmp_path / "d")})
    assert files_to_read(settings) == [
        ("the master key", str(tmp_path / "d" / "master.key")),
        ("the config file", str(config)),
        ("the TLS certificate", "/etc/c.pem"),
        ("the TLS key", "/etc/k.pem"),
    ]


@needs_root
def test_an_interpreter_or_modules_the_user_cannot_use_are_refused(reachable: Path, user: RunUser) -> None:
    """The workers are started with this process's interpreter, as the run
    user: one it cannot run (a Python under root's home) is refused before
    anything starts, not by each worker failing."""
    data = reachable / "data"
    data.mkdir()
    os.chown(data, user.uid, user.gid)
    private = reachable / "private"
    private.mkdir(mode=0o700)
    hidden = _runnable(private)
    with pytest.raises(ConfigError, match=f"cannot run the Python interpreter {hidden}; install"):
        _check(user, data, interpreter=hidden, modules=[])
    with pytest.raises(ConfigError, match=f"cannot read the Python modules in {private}"):
        _check(user, data, interpreter=_runnable(reachable),
                       modules=[str(reachable), str(private)])  # fmt: skip


def _check(user: RunUser, data: Path, **kw: Any) -> None:
    check_run_user(user, str(data), [("the master key", str(data / "master.key"))], **kw)


def _runnable(directory: Path) -> str:
    """An executable file in ``directory`` (stands in for an interpreter)."""
    path = directory / "python"
    path.write_text("#!/bin/sh\n")
    path.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    return str(path)
