"""bench/chart.py: the PNG chart of a benchmark run, drawn from hand-made results."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import matplotlib.image
import pytest

import bench
from bench import chart
from bench.__main__ import write_chart
from bench.phases import Figure
from bench.report import Results

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def small(scale: float) -> list[Figure]:
    return [
        Figure(f"4 KiB {method} c={c}", value * scale, "req/s")
        for method, c, value in [
            ("PUT", 1, 320),
            ("GET", 1, 900),
            ("HEAD", 1, 1100),
            ("PUT", 16, 1400),
            ("GET", 16, 4200),
            ("HEAD", 16, 5200),
        ]
    ]


def large(scale: float, errors: int = 0) -> list[Figure]:
    return [
        Figure("64 MiB PUT", 410 * scale, "MB/s", errors),
        Figure("64 MiB GET", 1300 * scale, "MB/s"),
        Figure("64 MiB GET, asyncio generator", 600 * scale, "MB/s"),
        Figure("128 MiB multipart (16 MiB parts x4)", 380 * scale, "MB/s"),
        Figure("random 1 MiB ranged GET c=4", 350 * scale, "req/s"),
    ]


def listing(scale: float) -> list[Figure]:
    return [
        Figure("fill 5,000 empty objects c=16", 1500 * scale, "req/s"),
        Figure("ListObjectsV2 full walk (5,000 keys)", 61_000 * scale, "keys/s"),
        Figure("first delimiter page (median of 5)", 12.3 / scale, "ms"),
    ]


def limits_and_ceiling(results: Results) -> Results:
    results.limits = {"md5": 650.0, "sha256": 400.0, "loopback": 3200.0, "disk_fsync": 900.0}
    results.ceiling = {
        f.name: f for f in (Figure("4 KiB PUT c=16", 7000, "req/s"), Figure("4 KiB GET c=16", 9000, "req/s"))
    }
    return results


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def assert_chart(path: Path) -> None:
    assert path.stat().st_size > 20_000  # three panels of bars and text, not a blank canvas
    assert png_size(path) == (1200, 800)  # 12 x 8 in at 100 dpi
    pixels = matplotlib.image.imread(str(path))
    assert pixels.shape[:2] == (800, 1200)
    # Something was drawn in each panel's region: not a uniform white image.
    assert pixels[..., :3].min() < 0.5
    assert pixels[100:400, :, :3].std() > 0.05  # small-objects panel (top)
    assert pixels[450:780, :700, :3].std() > 0.05  # large-objects panel (bottom left)
    assert pixels[450:780, 750:, :3].std() > 0.05  # listing panel (bottom right)


def test_full_run_two_servers(tmp_path: Path) -> None:
    results = limits_and_ceiling(Results())
    results.add("LightningStor", small(1) + large(1) + listing(1))
    results.add("moto", small(0.1) + large(0.2, errors=1) + listing(0.05))
    out = tmp_path / "chart.png"
    chart.render(results, str(out), when="2026-01-01 00:00 UTC")
    assert_chart(out)


def test_three_servers_with_workers(tmp_path: Path) -> None:
    results = limits_and_ceiling(Results())
    results.add("LightningStor", small(1) + large(1) + listing(1))
    results.add("LightningStor (2 workers)", small(1.7) + large(1.1) + listing(0.9))
    results.add("moto", small(0.1) + large(0.2) + listing(0.05))
    out = tmp_path / "chart.png"
    chart.render(results, str(out))
    assert_chart(out)


def test_moto_skipped_and_large_phase_missing(tmp_path: Path) -> None:
    results = limits_and_ceiling(Results())
    results.add("LightningStor", small(1) + listing(1))
    out = tmp_path / "chart.png"
    chart.render(results, str(out))
    assert out.stat().st_size > 10_000
    assert png_size(out) == (1200, 800)


@pytest.mark.parametrize(
    "figures",
    [
        [],  # nothing measured at all
        [Figure("4 KiB PUT c=1", 0.0, "req/s", errors=50)],  # every request failed
        [Figure("ListObjectsV2 full walk (0 keys)", 0.0, "keys/s", errors=1)],
        [Figure("first delimiter page (median of 5)", 3.0, "ms")],  # no walk figure
    ],
)
def test_degenerate_results_do_not_crash(tmp_path: Path, figures: list[Figure]) -> None:
    results = Results()
    if figures:
        results.add("LightningStor", figures)
    out = tmp_path / "chart.png"
    chart.render(results, str(out))
    assert png_size(out) == (1200, 800)


def test_write_chart_creates_directories(tmp_path: Path) -> None:
    results = limits_and_ceiling(Results())
    results.add("LightningStor", small(1))
    out = tmp_path / "sub" / "dir" / "chart.png"
    assert write_chart(results, out)
    assert png_size(out) == (1200, 800)


def test_compact_labels() -> None:
    assert chart._compact(320) == "320"
    assert chart._compact(1400) == "1.4k"
    assert chart._compact(61_000) == "61k"
    assert chart._compact(2_500_000) == "2.5M"
    assert chart._compact(0.42) == "0.42"


def test_write_chart_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No matplotlib: one line on stderr, no file, no exception (the run goes on)."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.delitem(sys.modules, "bench.chart")
    monkeypatch.delattr(bench, "chart")  # else `from bench import chart` finds the attribute
    out = tmp_path / "chart.png"
    assert write_chart(Results(), out) is False
    assert not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "matplotlib is not installed" in err[0]
