"""``lightningstor-admin collect`` and ``scrub``: argument handling and the
configuration errors reported before any store is opened.  Their work on real
data is covered by tests/integration/test_bitrot.py and
tests/integration/test_crash_consistency.py (they run the reactor, once per process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightningstor.admin import build_parser, main


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
