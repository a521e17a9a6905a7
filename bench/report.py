"""The results table: LightningStor, moto and the box's limits side by side."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field

from bench.limits import UNITS
from bench.phases import Figure

MiB = 1 << 20


@dataclass
class Results:
    """Figures per server, the box's limits, peak RSS per phase."""

    servers: dict[str, dict[str, Figure]] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)
    ceiling: dict[str, Figure] = field(default_factory=dict)
    rss: dict[str, dict[str, int | None]] = field(default_factory=dict)
    # Where the run was smaller than the sizes the targets name
    # (--quick, --scale): said above the checks, which are then indicative.
    reduced: str = ""

    def failed(self) -> int:
        """Requests that failed in any figure of any server, or of the
        trivial server: a run with any is no measurement."""
        figures = [f for by_name in self.servers.values() for f in by_name.values()]
        return sum(f.errors for f in [*figures, *self.ceiling.values()])

    def add(self, server: str, figures: list[Figure]) -> None:
        self.servers.setdefault(server, {}).update({f.name: f for f in figures})


def machine() -> str:
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / (1 << 20):.0f} GiB RAM, "
    except OSError:
        pass
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {mem}{platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; load average at the end: {load}"
    )


LOWER_IS_BETTER = frozenset({"ms", "us/req"})
"""Units of figures where less is better: their ratio column is moto's
figure over ours, so that above 1 means ahead, as for the others."""


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:,.1f} ms"
    if unit == "us/req":
        return f"{value:,.0f} µs/req"
    return f"{value:,.0f} {unit}"


def table(results: Results) -> str:
    """Markdown: one row per figure, one column per server, then ratio columns
    (first server vs moto) and the trivial server's figure where there is one."""
    names = list(results.servers)
    rows: list[str] = []
    header = ["figure", *names]
    if "moto" in names and len(names) > 1:
        header.append(f"{names[0]} / moto")
    header.append("trivial twisted.web (generator ceiling)")
    rows.append("| " + " | ".join(header) + " |")
    rows.append("|" + " --- |" * len(header))
    order: list[str] = []
    for figures in results.servers.values():
        order += [n for n in figures if n not in order]
    for name in order:
        cells = [name]
        unit = ""
        for server in names:
            f = results.servers[server].get(name)
            if f is None:
                cells.append("")
                continue
            unit = f.unit
            cells.append(_fmt(f.value, f.unit) + (f" ({f.errors} errors)" if f.errors else ""))
        if "moto" in names and len(names) > 1:
            ours, moto = results.servers[names[0]].get(name), results.servers["moto"].get(name)
            if ours and moto and (ours.errors or moto.errors):
                cells.append("invalid (errors)")
            elif ours and moto and moto.value and ours.value:
                ratio = moto.value / ours.value if unit in LOWER_IS_BETTER else ours.value / moto.value
                cells.append(f"{ratio:.1f}x")
            else:
                cells.append("")
        ceiling = results.ceiling.get(name)
        cells.append(
            _fmt(ceiling.value, ceiling.unit) + (f" ({ceiling.errors} errors)" if ceiling.errors else "")
            if ceiling
            else ""
        )
        rows.append("| " + " | ".join(cells) + " |")
    rows.append("")
    rows.append("| limit of the box (same run) | value |")
    rows.append("| --- | --- |")
    labels = {
        "md5": "MD5, one core",
        "sha256": "SHA-256, one core",
        "loopback": "one loopback TCP connection",
        "disk_fsync": "disk write, 8 MiB + fsync each",
        "durable_commit": "one durable SQLite commit of a 4 KiB row (median)",
    }
    for key, value in results.limits.items():
        unit = UNITS.get(key, "MB/s")
        shown = f"{value:,.2f}" if unit == "ms" else f"{value:,.0f}"
        rows.append(f"| {labels.get(key, key)} | {shown} {unit} |")
    if results.rss:
        rows.append("")
        phases = list(next(iter(results.rss.values())))
        rows.append("| peak server RSS | " + " | ".join(phases) + " |")
        rows.append("|" + " --- |" * (len(phases) + 1))
        for server, peaks in results.rss.items():
            cells = [f"{(peaks.get(p) or 0) / MiB:,.0f} MiB" if peaks.get(p) else "" for p in phases]
            rows.append(f"| {server} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def targets(results: Results) -> str:
    """The issue's targets that this run can check, with the ratio measured."""
    ours = next(iter(results.servers.values()), {})
    limits = results.limits
    lines = []

    if results.reduced:
        lines.append(f"- (reduced run: {results.reduced}; the checks below are indicative only)")

    def check(label: str, value: float | None, goal: float, higher: bool = True, *of: Figure | None) -> None:
        """One target line; ``of``: the figures it is computed from, whose
        failed requests (fast refusals inflate a rate) void it."""
        if value is None:
            return
        errors = sum(f.errors for f in of if f is not None)
        if errors:
            lines.append(f"- {label}: INVALID ({errors} failed requests)")
            return
        ok = value >= goal if higher else value <= goal
        lines.append(f"- {label}: {value:.2f} (target {'>=' if higher else '<='} {goal}) {'met' if ok else 'NOT met'}")

    def fig(suffix: str) -> Figure | None:
        return next((f for n, f in ours.items() if n.endswith(suffix)), None)

    put, get = fig("MiB PUT"), fig("MiB GET")
    if put and limits.get("md5"):
        check("large PUT / single-core MD5", put.value / limits["md5"], 0.5, True, put)
    parallel = fig("multipart (16 MiB parts x4)")
    if parallel and limits.get("md5"):
        # The "4 parallel streams": the multipart upload's four parts in flight.
        check(
            "4 parallel streams (multipart, 4 parts in flight) / two cores' MD5",
            parallel.value / (2 * limits["md5"]),
            0.7,
            True,
            parallel,
        )
    if get and limits.get("loopback"):
        check("large GET / one loopback connection", get.value / limits["loopback"], 0.5, True, get)
    for method, goal in (("GET", 0.6), ("PUT", 0.35)):
        f, c = ours.get(f"4 KiB {method} c=16"), results.ceiling.get(f"4 KiB {method} c=16")
        if f and c and c.value:
            check(f"4 KiB {method} c=16 / trivial twisted.web", f.value / c.value, goal, True, f, c)
    commit = limits.get("durable_commit")
    put1 = ours.get("4 KiB PUT c=1")
    if commit and put1 and not put1.errors:
        lines.append(
            f"- 4 KiB PUT c=1: {put1.value:,.0f} req/s; one durable commit takes {commit:.2f} ms here, "
            f"so no durable server exceeds {1000 / commit:,.0f} PUT/s at c=1"
        )
    moto = results.servers.get("moto", {})
    for name, figure in ours.items():
        theirs = moto.get(name)
        if theirs is None or not theirs.value or not figure.value or figure.unit not in ("req/s", "MB/s"):
            continue
        if name.startswith("4 KiB"):
            # ">= 5x moto on every small-object figure"
            check(f"{name} / moto", figure.value / theirs.value, 5.0, True, figure, theirs)
        elif "MiB" in name and "GET c=" not in name:
            check(f"{name} / moto", figure.value / theirs.value, 1.0, True, figure, theirs)  # "large figures beat moto's"
    walk = next((f for n, f in ours.items() if n.startswith("ListObjectsV2 full walk")), None)
    if walk:
        check("ListObjectsV2 walk keys/s", walk.value, 50_000, True, walk)
    first = ours.get("first delimiter page (median of 5)")
    if first:
        check("first delimiter page ms", first.value, 50, False, first)
    return "\n".join(lines)
