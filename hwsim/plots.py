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
