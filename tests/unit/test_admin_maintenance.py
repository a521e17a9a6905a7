"""``lightningstor-admin collect`` and ``scrub``: argument handling and the
configuration errors reported before any store is opened.  Their work on real
data is covered by tests/integration/test_bitrot.py and
tests/integration/test_crash_consistency.py (they run the reactor, once per process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lightningstor.admin import build_parser, collect_grace_problem, main
from lightningstor.config import load_settings


@pytest.mark.parametrize("command", ["collect", "scrub"])
def test_bad_config_is_reported_without_touching_data(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config file with an invalid value exits 1 naming the key, and creates nothing."""
    config = tmp_path / "bad.toml"
    config.write_text("[storage]\nchunk_size_bytes = 12\n")
    data = tmp_path / "data"
    assert main([command, "--config", str(config), "--data-dir", str(data)]) == 1
    assert "storage.chunk_size_bytes" in capsys.readouterr().err
    assert not data.exists()


def test_collect_grace_defaults_to_a_day() -> None:
    """Without --grace-seconds, collect keeps anything younger than 24 h (the
    server's own grace), so running it beside a live server is safe."""
    args = build_parser().parse_args(["collect", "--data-dir", "/x"])
    assert args.grace_seconds == 86400.0
    assert build_parser().parse_args(["collect", "--grace-seconds", "0"]).grace_seconds == 0.0


@pytest.mark.parametrize("grace", ["0", "2", "599.5"])
def test_collect_refuses_a_grace_below_the_configurations_bound(
    grace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With limits.max_write_seconds = 300 and storage.free_delay_seconds = 120, a
    --grace-seconds below 2 x 300 is an argument error (exit status 2, before any store is
    opened) that names both settings, the bound and the override flag."""
    config = tmp_path / "server.toml"
    config.write_text("[limits]\nmax_write_seconds = 300\n\n[storage]\nfree_delay_seconds = 120\n")
    data = tmp_path / "data"
    assert main(["collect", "--config", str(config), "--data-dir", str(data), "--grace-seconds", grace]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lightningstor-admin collect: error: --grace-seconds")
    for words in ("limits.max_write_seconds (300)", "storage.free_delay_seconds (120)", "600 s",
                  "--unsafe-short-grace"):  # fmt: skip
        assert words in err
    assert not data.exists()


def test_collect_grace_bound_is_twice_the_longer_setting_unless_overridden(tmp_path: Path) -> None:
    """The bound follows whichever of max_write_seconds and free_delay_seconds is longer;
    a grace at the bound passes, and --unsafe-short-grace lets any grace through (its
    flag parses)."""
    config = tmp_path / "server.toml"
    config.write_text("[limits]\nmax_write_seconds = 60\n\n[storage]\nfree_delay_seconds = 90\n")
    settings = load_settings(str(config), env={})
    assert collect_grace_problem(settings, 180, unsafe=False) is None
    problem = collect_grace_problem(settings, 179, unsafe=False)
    assert problem is not None and "180 s" in problem
    assert collect_grace_problem(settings, 0, unsafe=True) is None
    # The defaults (6 h writes, 300 s delay) leave the default grace (24 h) alone.
    assert collect_grace_problem(load_settings(None, env={}), 86400, unsafe=False) is None
    assert build_parser().parse_args(["collect", "--unsafe-short-grace"]).unsafe_short_grace


@pytest.mark.parametrize("argv", [["collect"], ["scrub"], ["quota", "show", "--org", "acme"], ["sse", "rewrap"]])
def test_a_command_that_only_reads_refuses_a_missing_store(argv: list[str], tmp_path: Path) -> None:
    """A mistyped --data-dir (no SQLite database there) is an argument error
    (exit status 2) and creates nothing.  It used to create an empty store
    and report it: a scrub of it exited 0, "clean", for ever.  In a child
    process with a timeout: a collect that opened a new store would wait out
    a day's grace, which must fail this test, not hang the run."""
    data = tmp_path / "datta"
    done = subprocess.run(
        [sys.executable, "-m", "lightningstor.admin", *argv, "--data-dir", str(data)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert ("no metadata store at" in done.stderr or "no master key file at" in done.stderr) and str(data) in done.stderr
    assert not data.exists()


def _new_store(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A data directory holding an empty store (the identity commands create
    one), and the environment to run admin commands on it."""
    data = str(tmp_path / "data")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    made = subprocess.run(
        [sys.executable, "-m", "lightningstor.admin", "principal", "list", "--data-dir", data],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return data, env


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_waiting_collect(tmp_path: Path, signum: int) -> None:
    """``collect`` waits out its grace between its two looks (a day by
    default); SIGINT or SIGTERM ends it at once with exit status 130.  It
    used to stop the reactor and then hang for ever in the interpreter's
    exit, on the thread pools' threads, until SIGKILL."""
    data, env = _new_store(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightningstor.admin", "collect", "--data-dir", data],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # A test run in the background inherits SIGINT ignored, and a process
        # that ignores it is not the case this test is about.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "looking again every" in line, line
        proc.send_signal(signum)
        status = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    errors = proc.stderr.read() if proc.stderr else ""
    assert status == 130, errors
    # The cut work is closed, not left to the collector at exit, which
    # printed "Exception ignored in: <coroutine ...> ... GeneratorExit".
    assert errors.strip() == "interrupted", errors


@pytest.mark.parametrize("grace", ["inf", "nan", "-1", "1e300"])
def test_collect_refuses_a_grace_that_is_no_number_of_seconds(grace: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``inf`` passed the bound and waited for ever; ``nan`` was refused as
    'shorter than' the bound.  Both are argument errors now, as is a grace
    past a year (the server's own limit for [collector] grace_seconds)."""
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["collect", "--grace-seconds", grace])
    assert exit_.value.code == 2
    assert "--grace-seconds" in capsys.readouterr().err


_PASSES = """
import sys, time
from lightningstor import admin
from lightningstor.core import collector

looks = []
real = collector.collect_orphans

def counted(store, backend, now, grace, seen):
    looks.append(time.monotonic())
    return real(store, backend, now, grace, seen)

collector.collect_orphans = counted
status = admin.main(sys.argv[1:])
print("looks", len(looks), "span", round(looks[-1] - looks[0], 2), "status", status)
"""


def test_collect_looks_every_quarter_of_its_grace(tmp_path: Path) -> None:
    """Two looks a grace apart deleted, inside its free delay, a chunk that
    was part of a write in flight at the first look, then of an object, then
    freed by an overwrite shortly before the second (a GET still streaming
    it was cut off).  A look while it was referenced forgets it: the command
    now looks at once and every quarter of the grace until it has passed."""
    data, env = _new_store(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", _PASSES, "collect", "--data-dir", data, "--grace-seconds", "2", "--unsafe-short-grace"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1].split()
    assert last[:2] == ["looks", "5"], done.stdout
    assert 1.9 <= float(last[3]) < 4 and last[5] == "0"


def test_a_store_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    """A metadata.db that is no database (or an etcd that does not answer)
    printed a 30-40 line traceback; access-control.md promises one line and
    exit status 1."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "metadata.db").write_text("not a database\\n" * 100)
    done = subprocess.run(
        [sys.executable, "-m", "lightningstor.admin", "scrub", "--data-dir", str(data)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_presign_refuses_what_is_no_http_url(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """'not a url', an ftp:// URL and a bare path were 'presigned' (exit 0)."""
    monkeypatch.setenv("LIGHTNINGSTOR_ACCESS_KEY", "AK")
    monkeypatch.setenv("LIGHTNINGSTOR_SECRET_KEY", "SK")
    for url in ("not a url", "ftp://host/b/k", "/b/k", "http:///b/k"):
        assert main(["presign", url]) == 1, url
        assert "is not an http:// or https:// URL with a host" in capsys.readouterr().err
    assert main(["presign", "http://127.0.0.1:9000/b/k"]) == 0
    assert capsys.readouterr().out.startswith("http://127.0.0.1:9000/b/k?X-Amz-Algorithm=")
