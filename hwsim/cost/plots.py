"""Plots of priced counts (matplotlib, Agg backend), written atomically as PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from models.files import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def energy_stack(values: Mapping[str, Mapping[str, float]], components: Sequence[str], path: str | Path,
                 title: str = "Energy per inference by component") -> None:
    """Stacked bars, one per variant: `values[variant][component]` in pJ, drawn in nJ."""
    plt = _pyplot()
    variants = list(values)
    fig, ax = plt.subplots(figsize=(3.6 + 1.4 * len(variants), 4.5))
    bottom = [0.0] * len(variants)
    for i, comp in enumerate(components):
        heights = [values[v].get(comp, 0.0) / 1e3 for v in variants]
        if not any(heights):
            continue
        ax.bar(variants, heights, bottom=bottom, label=comp, color=f"C{i}")
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_ylabel("nJ per inference (estimate from op counts)")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def energy_vs_seq_len(series: Mapping[str, Sequence[tuple[int, float]]], path: str | Path,
                      title: str = "Energy per inference vs sequence length") -> None:
    """One line per variant: `series[variant] = [(seq_len, pJ), ...]`, drawn in nJ."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for variant, points in series.items():
        pts = sorted(points)
        ax.plot([p[0] for p in pts], [p[1] / 1e3 for p in pts], marker="o", label=variant)
    ax.set_xlabel("sequence length (tokens)")
    ax.set_ylabel("nJ per inference (estimate from op counts)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def energy_vs_seq_len_panels(panels: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]], path: str | Path) -> None:
    """One panel per scenario, one line per variant: `panels[scenario][variant] = [(seq_len, pJ), ...]`,
    drawn in uJ on log-log axes."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.6), squeeze=False)
    for ax, (name, series) in zip(axes[0], panels.items()):
        for variant, points in series.items():
            pts = sorted(points)
            ax.plot([p[0] for p in pts], [p[1] / 1e6 for p in pts], marker="o", label=variant)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel("tokens")
    axes[0][0].set_ylabel("uJ per inference (model estimate)")
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _save(fig, plt, path: str | Path, dpi: int = 110) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)


def stacked_bar_panels(panels: Mapping[str, Mapping[str, Mapping[str, float]]], path: str | Path,
                       ylabel: str = "uJ per inference (model estimate)", ncols: int = 2) -> None:
    """One panel per title, one stacked bar per variant: `panels[title][variant][part]` in pJ, drawn
    in uJ; a part keeps its colour in every panel."""
    plt = _pyplot()
    parts: list[str] = []
    for bars in panels.values():
        for split in bars.values():
            parts += [p for p in split if p not in parts]
    palette = plt.get_cmap("tab20").colors
    rows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(rows, ncols, figsize=(5.2 * ncols, 3.8 * rows), squeeze=False)
    for ax, (title, bars) in zip(axes.flat, panels.items()):
        variants = list(bars)
        bottom = [0.0] * len(variants)
        for part in parts:
            heights = [bars[v].get(part, 0.0) / 1e6 for v in variants]
            if any(heights):
                ax.bar(variants, heights, bottom=bottom, label=part, color=palette[parts.index(part) % len(palette)])
                bottom = [b + h for b, h in zip(bottom, heights)]
        ax.set_title(title, fontsize="medium")
        ax.set_ylabel(ylabel)
        handles, labels = ax.get_legend_handles_labels()   # top of the stack first
        ax.legend(handles[::-1], labels[::-1], fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    _save(fig, plt, path)


def accuracy_vs_energy(points: Sequence[tuple[str, str, float, float]], path: str | Path, tokens: int) -> None:
    """One point per (variant, scenario): `points = [(variant, scenario, pJ per inference, accuracy 0-1)]`;
    colour by variant, marker by scenario, energy in uJ from zero."""
    plt = _pyplot()
    variants = list(dict.fromkeys(p[0] for p in points))
    scenarios = list(dict.fromkeys(p[1] for p in points))
    markers = "osD^vP*Xh<>"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant, scenario, pj, acc in points:   # later variants smaller, so equal points stay visible
        i = variants.index(variant)
        ax.scatter(pj / 1e6, 100 * acc, color=f"C{i % 10}", marker=markers[scenarios.index(scenario) % len(markers)],
                   s=max(20, 110 - 35 * i), alpha=0.85)
    for i, v in enumerate(variants):
        ax.scatter([], [], color=f"C{i % 10}", marker="o", label=v)
    for i, s in enumerate(scenarios):
        ax.scatter([], [], color="grey", marker=markers[i % len(markers)], label=s)
    ax.set_xlim(left=0)
    ax.set_xlabel(f"energy per inference at {tokens} tokens, uJ (model estimate)")
    ax.set_ylabel("int8 test accuracy, % (hwsim)")
    ax.set_title("Accuracy against energy: one point per variant per scenario")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    _save(fig, plt, path)


def share_vs_seq_len_panels(panels: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]], path: str | Path,
                            ylabel: str, mark: int | None = None, ncols: int = 3) -> None:
    """One panel per scenario, one line per variant: `panels[scenario][variant] = [(seq_len, share 0-1)]`,
    drawn in % on a log2 length axis; a dotted vertical line at `mark` tokens."""
    plt = _pyplot()
    rows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(rows, ncols, figsize=(3.8 * ncols, 3.3 * rows), squeeze=False)
    for ax, (name, series) in zip(axes.flat, panels.items()):
        ticks = sorted({p[0] for pts in series.values() for p in pts})
        for variant, points in series.items():
            pts = sorted(points)
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=variant)
        if mark is not None:
            ax.axvline(mark, color="grey", linestyle=":", linewidth=1, label=f"{mark} tokens")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks], fontsize="small")
        ax.minorticks_off()
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel(ylabel, fontsize="small")
    axes[0][0].legend(fontsize="small")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    _save(fig, plt, path)


def pareto_panels(panels: Mapping[str, Mapping[str, Sequence[tuple]]], path: str | Path, title: str = "") -> None:
    """Accuracy against energy, one panel per title (e.g. a sequence length), one line per variant:
    `panels[title][variant] = [(pJ, accuracy, low, high, label), ...]` (accuracy and its interval as
    fractions, low/high None without one), drawn as uJ (log axis) vs %, each point labelled."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.0), squeeze=False)
    for ax, (name, series) in zip(axes[0], panels.items()):
        for i, (variant, points) in enumerate(series.items()):
            pts = sorted(points, key=lambda p: p[0])
            xs, ys = [p[0] / 1e6 for p in pts], [100 * p[1] for p in pts]
            err = [[100 * (p[1] - p[2]) if p[2] is not None else 0 for p in pts],
                   [100 * (p[3] - p[1]) if p[3] is not None else 0 for p in pts]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=f"C{i}", label=variant)
            for x, y, p in zip(xs, ys, pts):
                ax.annotate(p[4], (x, y), textcoords="offset points", xytext=(4, 4), fontsize="x-small", color=f"C{i}")
        ax.set_xscale("log")
        ax.set_xlabel("uJ per inference (model estimate)")
        ax.set_title(name, fontsize="medium")
    axes[0][0].set_ylabel("test accuracy % (hwsim, mean over seeds)")
    axes[0][0].legend(fontsize="small")
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    _save(fig, plt, path)


def lines_panels(panels: Mapping[str, Mapping[str, Sequence[tuple[float, float]]]], path: str | Path,
                 xlabel: str, ylabel: str, yscale: float = 1e-6) -> None:
    """One panel per title, one line per variant: `panels[title][variant] = [(x, y), ...]`, y drawn
    times `yscale` (default pJ -> uJ)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.6), squeeze=False)
    for ax, (name, series) in zip(axes[0], panels.items()):
        for variant, points in series.items():
            pts = sorted(points)
            ax.plot([p[0] for p in pts], [p[1] * yscale for p in pts], marker="o", label=variant)
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel(xlabel)
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    _save(fig, plt, path)
