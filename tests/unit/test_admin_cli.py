"""Tests for the lightningstor-admin command line (lightningstor.admin)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import TextIO

import pytest

from lightningstor import admin

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "single-node.toml"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own LIGHTNINGSTOR_* variables must not leak into tests."""
    for name in list(os.environ):
        if name.startswith("LIGHTNINGSTOR_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_check_config_valid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A valid file: exit 0, "OK: <file>" first, then the effective values
    (file values and defaults), nothing on stderr."""
    path = write(tmp_path, '[server]\ns3_addr = "127.0.0.1:8000"\n[storage.rados]\npool = "objects"\n')
    assert admin.main(["check-config", path]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"OK: {path}"
    assert '  server.s3_addr = "127.0.0.1:8000"' in lines
    assert "  storage.chunk_size_bytes = 8388608" in lines
    assert "  server.metrics_addr = (not set)" in lines
    assert '  storage.rados.pool = "objects"' in lines
    assert err == ""


def test_check_config_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid file: exit 1, one "error:" line per problem on stderr, a
    count, and no "OK" on stdout."""
    path = write(tmp_path, "[server]\nworkers = -1\ns3_adr = 'x'\n[storage]\nshard_depth = 9\n")
    assert admin.main(["check-config", path]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0].startswith("error: server.workers: must be between 0 and 1024")
    assert lines[1] == "error: unknown key 'server.s3_adr' (did you mean 's3_addr'?)"
    assert lines[2].startswith("error: storage.shard_depth: must be between 0 and 4")
    assert lines[3] == f"{path}: 3 problems"


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that does not exist: exit 1 with the reason."""
    path = str(tmp_path / "absent.toml")
    assert admin.main(["check-config", path]) == 1
    err = capsys.readouterr().err
    assert f"error: config file {path}: No such file" in err
    assert f"{path}: 1 problem\n" in err


def test_check_config_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A TOML syntax error: exit 1, message with the line number."""
    path = write(tmp_path, "[server\n")
    assert admin.main(["check-config", path]) == 1
    assert "line 1" in capsys.readouterr().err


def test_check_config_missing_node_tls_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The distributed backend's client certificate files are checked too."""
    ca = tmp_path / "ca.pem"
    ca.write_text("ca")
    path = write(
        tmp_path,
        '[storage]\nbackend = "distributed"\n[storage.distributed]\n'
        'nodes = ["https://127.0.0.1:9002"]\nreplication_factor = 1\n'
        f'tls_cert_file = "{tmp_path}/c.pem"\ntls_key_file = "{tmp_path}/k.pem"\ntls_ca_file = "{ca}"\n',
    )
    assert admin.main(["check-config", path]) == 1
    err = capsys.readouterr().err
    assert f"error: storage.distributed.tls_cert_file: {tmp_path}/c.pem: no such file" in err
    assert f"error: storage.distributed.tls_key_file: {tmp_path}/k.pem: no such file" in err
    assert "tls_ca_file" not in err


def test_check_config_missing_tls_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """TLS files named by the config must exist; a missing one fails the check."""
    cert = tmp_path / "server.crt"
    cert.write_text("cert")
    path = write(tmp_path, f'[server.tls]\ncert_file = "{cert}"\nkey_file = "{tmp_path}/server.key"\n')
    assert admin.main(["check-config", path]) == 1
    err = capsys.readouterr().err
    assert f"error: server.tls.key_file: {tmp_path}/server.key: no such file" in err
    assert "cert_file" not in err


def test_check_config_missing_aegis_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The aegis authorizer's token file, which start-up reads, must exist:
    check-config said OK for a configuration the server then refused."""
    path = write(tmp_path, f'[iam]\nauthorizer = "aegis"\nendpoint = "http://127.0.0.1:1"\n'
                           f'service_account = "ls"\ntoken_path = "{tmp_path}/token"\n')  # fmt: skip
    assert admin.main(["check-config", path]) == 1
    assert f"error: iam.token_path: {tmp_path}/token: no such file" in capsys.readouterr().err


def test_check_config_does_not_touch_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Checking a config whose data_dir does not exist succeeds and creates nothing."""
    data_dir = tmp_path / "state"
    path = write(tmp_path, f'data_dir = "{data_dir}"\n')
    assert admin.main(["check-config", path]) == 0
    assert not data_dir.exists()
    assert f'  storage.data_dir = "{data_dir}/data"' in capsys.readouterr().out


def test_check_config_applies_environment_unless_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Effective values include LIGHTNINGSTOR_* overrides, as the server would
    see them; --ignore-env checks the file alone."""
    path = write(tmp_path, '[server]\ns3_addr = "127.0.0.1:8000"\n')
    monkeypatch.setenv("LIGHTNINGSTOR_S3_ADDR", "127.0.0.1:8123")
    assert admin.main(["check-config", path]) == 0
    assert '  server.s3_addr = "127.0.0.1:8123"' in capsys.readouterr().out
    assert admin.main(["check-config", "--ignore-env", path]) == 0
    assert '  server.s3_addr = "127.0.0.1:8000"' in capsys.readouterr().out


def test_bad_environment_fails_check_naming_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad override in the environment is reported with the variable's name."""
    path = write(tmp_path, "")
    monkeypatch.setenv("LIGHTNINGSTOR_LOG_LEVEL", "chatty")
    assert admin.main(["check-config", path]) == 1
    assert "logging.level (from LIGHTNINGSTOR_LOG_LEVEL)" in capsys.readouterr().err


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a subcommand: exit 2 and usage on stderr."""
    assert admin.main([]) == 2
    assert "usage: lightningstor-admin" in capsys.readouterr().err


def test_unknown_command_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse's exits become return values: 2 for a bad command, 0 for --help."""
    assert admin.main(["frobnicate"]) == 2
    assert admin.main(["--help"]) == 0
    assert "check-config" in capsys.readouterr().out


def test_subcommand_table_drives_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new entry in SUBCOMMANDS is a working subcommand: its arguments are
    parsed and its handler's return value is the exit status."""
    seen: list[str] = []

    def configure(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("name")

    def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
        seen.append(args.name)
        return 7

    monkeypatch.setitem(admin.SUBCOMMANDS, "hello", admin.Subcommand("say hello", configure, run))
    assert admin.main(["hello", "world"]) == 7
    assert seen == ["world"]


def test_module_runs_as_script() -> None:
    """`python -m lightningstor.admin check-config FILE` works in a real
    process: exit 0 and "OK" for the shipped example, 1 for a missing file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNINGSTOR_")}
    env["PYTHONPATH"] = str(REPO)
    ok = subprocess.run(
        [sys.executable, "-m", "lightningstor.admin", "check-config", str(EXAMPLE)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"OK: {EXAMPLE}\n")
    bad = subprocess.run(
        [sys.executable, "-m", "lightningstor.admin", "check-config", str(REPO / "no-such.toml")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert bad.returncode == 1
    assert "No such file" in bad.stderr


def test_admin_commands_open_the_data_without_importing_the_server(tmp_path: Path) -> None:
    """An admin command opens the store the way the server does
    (``plugins.open_plugins``) without importing the server itself (the S3
    and gRPC layers: about half of each command's start-up)."""
    code = (
        "import sys; from lightningstor.admin import main; "
        f"rc = main(['principal', 'list', '--data-dir', {str(tmp_path / 'data')!r}]); "
        "print(rc, sorted(m for m in sys.modules if m in ('lightningstor.server', 'lightningstor.s3.app', 'klein')))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNINGSTOR_")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "0 []", run.stdout


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_the_server_command_prints_its_help_for_h_and_help(flag: str) -> None:
    """SPEC's ``-h, --help`` for ``twistd lightningstor`` (``-h`` was an
    unknown option, exit 1)."""
    import subprocess
    import sys
    from pathlib import Path as _Path

    twistd = str(_Path(sys.executable).with_name("twistd"))
    done = subprocess.run([twistd, "lightningstor", flag], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "-h, --help" in done.stdout and "--data-dir" in done.stdout


@pytest.mark.parametrize("content", ["dir", b"notakey\n"], ids=["directory", "damaged"])
def test_check_config_reads_an_existing_master_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: object
) -> None:
    """A master key file that exists but is no key file (a directory, garbage)
    stops the server: check-config said OK. A missing one stays fine (the
    server creates it)."""
    key = tmp_path / "master.key"
    if content == "dir":
        key.mkdir()
    else:
        key.write_bytes(content)
    path = write(tmp_path, f'[security]\nmaster_key_file = "{key}"\n')
    assert admin.main(["check-config", path]) == 1
    assert f"error: security.master_key_file: {key}" in capsys.readouterr().err
    absent = write(tmp_path, f'[security]\nmaster_key_file = "{tmp_path / "absent.key"}"\n')
    assert admin.main(["check-config", absent]) == 0
