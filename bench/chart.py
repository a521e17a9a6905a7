"""A PNG chart of the results table (``python -m bench --chart PATH``).

Three panels drawn from a :class:`bench.report.Results`:

* small objects: 4 KiB PUT/GET/HEAD at c=1 and c=16 in req/s, one bar per
  server, the trivial twisted.web server (the generator's ceiling) as a
  dashed marker over the groups it was measured for;
* large objects: PUT, GET and multipart MB/s per server, with the box's
  limits (single-core MD5, one loopback connection, disk writes with fsync)
  as horizontal reference lines and the ranged GET rate as a note;
* listing: the full ListObjectsV2 walk in keys/s per server, the first
  delimiter page in ms as a note.

Figures that were not measured (a phase not run, moto skipped) are left out;
a panel with nothing to show says so instead of drawing empty axes.
Needs matplotlib (the ``bench`` extra); only the Agg backend is used.
"""

from __future__ import annotations

import math
import textwrap
import time
from collections.abc import Iterable

import matplotlib

matplotlib.use("Agg")

from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure as MplFigure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from bench.phases import Figure  # noqa: E402
from bench.report import Results, machine  # noqa: E402

SMALL_ORDER = [f"4 KiB {m} c={c}" for c in (1, 16) for m in ("PUT", "GET", "HEAD")]
LIMIT_LINES = [
    ("md5", "MD5, one core", "tab:red", "--"),
    ("loopback", "one loopback TCP connection", "tab:purple", "-."),
    ("disk_fsync", "disk write + fsync", "tab:brown", ":"),
]
WALK_TARGET = 50_000  # keys/s, the target (bench.report.targets)
# Value labels stay readable where a reference line crosses them.
LABEL_BOX = {"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5}
COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:olive", "tab:cyan", "tab:pink"]


def _compact(value: float) -> str:
    """1234 -> '1.2k', 56789 -> '57k', 12.3 -> '12', 0.42 -> '0.42'."""
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    if value >= 10:
        return f"{value:.0f}"
    return f"{value:.2g}"


def _use_log(ax: Axes, values: Iterable[float], spread: float = 30.0) -> bool:
    """Log y axis when the positive values span more than ``spread``x."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    log = len(positive) >= 2 and max(positive) / min(positive) > spread
    if log:
        ax.set_yscale("log")
        ax.set_ylim(min(positive) / 2.5, max(positive) * 3)
    else:
        ax.set_ylim(0, max(positive, default=1.0) * 1.18)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _compact(v) if v > 0 else "0"))
    return log


def _empty(ax: Axes, title: str, why: str) -> None:
    ax.set_title(title, fontsize=11, fontweight="bold")
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, fontsize=10, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _label(figure: Figure) -> str:
    return _compact(figure.value) + (f"\n({figure.errors} err)" if figure.errors else "")


def _grouped_bars(
    ax: Axes,
    categories: list[str],
    servers: list[str],
    colours: dict[str, str],
    lookup: dict[str, dict[str, Figure]],
) -> float:
    """One group per category, one bar per server that has the figure; value
    labels on the bars.  Returns the width of one group."""
    group = 0.8
    width = group / max(1, len(servers))
    for s, server in enumerate(servers):
        xs, heights, labels = [], [], []
        for i, name in enumerate(categories):
            f = lookup[server].get(name)
            if f is None:
                continue
            xs.append(i - group / 2 + width * (s + 0.5))
            heights.append(f.value)
            labels.append(_label(f))
        if not xs:
            continue
        bars = ax.bar(xs, heights, width * 0.92, label=server, color=colours[server])
        ax.bar_label(bars, labels=labels, fontsize=7, padding=2, bbox=LABEL_BOX)
    ax.set_xticks(range(len(categories)))
    return group


def _small(ax: Axes, results: Results, servers: list[str], colours: dict[str, str]) -> None:
    title = "Small objects: 4 KiB requests (req/s, higher is better)"
    present = {n for figs in results.servers.values() for n in figs if n.startswith("4 KiB ")}
    categories = [n for n in SMALL_ORDER if n in present] + sorted(present - set(SMALL_ORDER))
    if not categories:
        _empty(ax, title, "small-object phase not run")
        return
    with_figs = [s for s in servers if any(n in results.servers[s] for n in categories)]
    group = _grouped_bars(ax, categories, with_figs, colours, results.servers)
    ax.set_xticklabels([n.removeprefix("4 KiB ") for n in categories], fontsize=9)
    values = [results.servers[s][n].value for s in with_figs for n in categories if n in results.servers[s]]
    drawn = False
    for i, name in enumerate(categories):
        c = results.ceiling.get(name)
        if c is None:
            continue
        values.append(c.value)
        ax.hlines(
            c.value,
            i - group / 2 - 0.04,
            i + group / 2 + 0.04,
            colors="black",
            linestyles="--",
            linewidth=1.5,
            label="_nolegend_" if drawn else "trivial twisted.web (generator ceiling)",
        )
        ours = results.servers[with_figs[0]].get(name) if with_figs else None
        ratio = f" ({with_figs[0]}: {ours.value / c.value:.2f}x)" if ours and c.value else ""
        ax.annotate(
            f"ceiling {_compact(c.value)}{ratio}",
            (i, c.value),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
            bbox=LABEL_BOX,
        )
        drawn = True
    _use_log(ax, values)
    ax.set_ylabel("req/s")
    ax.set_title(title, fontsize=11, fontweight="bold")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)


def _large_kind(name: str) -> str | None:
    if name.endswith(" MiB PUT"):
        return "PUT"
    if name.endswith(" MiB GET"):
        return "GET"
    if " MiB multipart" in name:
        return "multipart"
    return None


def _large(ax: Axes, results: Results, servers: list[str], colours: dict[str, str]) -> None:
    title = "Large objects (MB/s, higher is better)"
    names: dict[str, str] = {}  # kind -> full figure name, first seen
    by_kind: dict[str, dict[str, Figure]] = {s: {} for s in servers}
    for server in servers:
        for name, f in results.servers[server].items():
            kind = _large_kind(name)
            if kind is not None:
                names.setdefault(kind, name)
                by_kind[server][kind] = f
    categories: list[str] = [k for k in ("PUT", "GET", "multipart") if k in names]
    if not categories:
        limits = [
            f"{label}: {results.limits[key]:,.0f} MB/s"
            for key, label, _, _ in LIMIT_LINES
            if results.limits.get(key)
        ]
        _empty(
            ax,
            title,
            "large-object phase not run" + ("\n\nlimits of the box:\n" + "\n".join(limits) if limits else ""),
        )
        return
    with_figs = [s for s in servers if by_kind[s]]
    _grouped_bars(ax, categories, with_figs, colours, by_kind)
    ax.set_xticklabels([textwrap.fill(names[k], 18) for k in categories], fontsize=8)
    values = [f.value for s in with_figs for f in by_kind[s].values()]
    for key, label, colour, style in LIMIT_LINES:
        limit = results.limits.get(key)
        if not limit:
            continue
        values.append(limit)
        ax.axhline(
            limit, color=colour, linestyle=style, linewidth=1.3, label=f"{label}: {_compact(limit)} MB/s"
        )
    _use_log(ax, values, spread=15.0)
    ax.set_ylabel("MB/s")
    ax.set_title(title, fontsize=11, fontweight="bold")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    ranged = [
        f"{s}: {_compact(r.value)} req/s"
        for s in servers
        if (r := results.servers[s].get("random 1 MiB ranged GET c=4")) is not None
    ]
    if ranged:
        ax.set_xlabel("random 1 MiB ranged GET c=4 -- " + "; ".join(ranged), fontsize=8)


def _listing(ax: Axes, results: Results, servers: list[str], colours: dict[str, str]) -> None:
    title = "Listing: ListObjectsV2 full walk (keys/s)"
    walks: list[tuple[str, Figure]] = []
    walk_name = ""
    for server in servers:
        for name, f in results.servers[server].items():
            if name.startswith("ListObjectsV2 full walk"):
                walks.append((server, f))
                walk_name = walk_name or name
    firsts = [
        (s, d)
        for s in servers
        if (d := results.servers[s].get("first delimiter page (median of 5)")) is not None
    ]
    if not walks and not firsts:
        _empty(ax, "Listing", "listing phase not run")
        return
    if walks:
        xs = range(len(walks))
        bars = ax.bar(xs, [f.value for _, f in walks], 0.6, color=[colours[s] for s, _ in walks])
        ax.bar_label(bars, labels=[_label(f) for _, f in walks], fontsize=8, padding=2, bbox=LABEL_BOX)
        ax.set_xticks(list(xs))
        ax.set_xticklabels([textwrap.fill(s, 14) for s, _ in walks], fontsize=8)
        values = [f.value for _, f in walks]
        values.append(WALK_TARGET)
        ax.axhline(
            WALK_TARGET,
            color="tab:red",
            linestyle="--",
            linewidth=1.2,
            label=f"target {_compact(WALK_TARGET)}",
        )
        _use_log(ax, values)
        ax.legend(fontsize=7, loc="upper right")
        ax.set_ylabel("keys/s")
        ax.grid(axis="y", alpha=0.3)
        keys = walk_name.removeprefix("ListObjectsV2 full walk").strip(" ()")
        title = f"Listing: full walk of {keys} (keys/s)" if keys else title
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(textwrap.fill(title, 40), fontsize=11, fontweight="bold")
    if firsts:
        note = "first delimiter page (median of 5):\n" + "\n".join(
            f"{s}: {f.value:,.1f} ms" for s, f in firsts
        )
        ax.set_xlabel(note, fontsize=8)


def render(results: Results, path: str, when: str | None = None) -> None:
    """Write the three-panel PNG chart of ``results`` to ``path``."""
    servers = list(results.servers)
    colours = {s: COLOURS[i % len(COLOURS)] for i, s in enumerate(servers)}
    fig = MplFigure(figsize=(12, 8), dpi=100, layout="constrained")
    grid = fig.add_gridspec(2, 5)
    _small(fig.add_subplot(grid[0, :]), results, servers, colours)
    _large(fig.add_subplot(grid[1, :3]), results, servers, colours)
    _listing(fig.add_subplot(grid[1, 3:]), results, servers, colours)
    when = when or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    heading = f"LightningStor benchmark (python -m bench), {when}"
    fig.suptitle(heading + "\n" + textwrap.fill(machine(), 150), fontsize=9)
    fig.savefig(path, dpi=100)
