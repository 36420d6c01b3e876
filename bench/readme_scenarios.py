"""The README's scenario table, generated from a scenario CSV (`hwsim demo` writes `scenarios.csv`,
`hwsim cost --csv` the same columns), so the README quotes a record, not hand-typed figures.

    PYTHONPATH=. .venv/bin/python bench/readme_scenarios.py demo_out/scenarios.csv [--lengths 32,128,512]

Prints one Markdown row per (mapped scenario, length): energy per inference of each variant (leakage
included), dot's DRAM and leakage shares and attention's share, the inhibitor/dot ratios inside
attention and for the whole model, latency per inference and its ideal bound, PE utilisation and the
area of the dot and inhibitor designs. Every figure is a model estimate.
"""
from __future__ import annotations

import argparse
import csv
from collections import defaultdict

from models import variants

VARIANTS = variants.names()  # every registered attention variant


def load(path: str) -> dict[tuple[str, int], dict[str, dict[str, str]]]:
    """(scenario, seq_len) -> variant -> CSV row."""
    cells: dict[tuple[str, int], dict[str, dict[str, str]]] = defaultdict(dict)
    with open(path, encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            cells[(row["scenario"], int(row["seq_len"]))][row["variant"]] = row
    return cells


def table(cells, lengths: tuple[int, ...]) -> str:
    head = ["scenario", "tokens", *(f"{v} uJ" for v in VARIANTS), "DRAM share (dot)", "leakage share (dot)",
            "attention share (dot)", "inhibitor/dot attention", "inhibitor/dot model", "latency us/inference (dot)",
            "ideal us", "PE utilisation", "area mm2 dot / inhibitor"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (scenario, n), by in sorted(cells.items(), key=lambda kv: (kv[0][0] != "edge", kv[0][0], kv[0][1])):
        if n not in lengths or not by.get("dot", {}).get("latency_us"):
            continue
        dot, inh = by["dot"], by.get("inhibitor")
        f = lambda row, col: float(row[col])  # noqa: E731
        batch = f(dot, "batch")
        cols = [scenario, str(n)]
        cols += [f"{f(by[v], 'energy_uJ'):,.0f}" if v in by else "-" for v in VARIANTS]
        cols += [f"{f(dot, 'dram_uJ') / f(dot, 'energy_uJ'):.0%}", f"{f(dot, 'leakage_uJ') / f(dot, 'energy_uJ'):.2%}",
                 f"{f(dot, 'attention_share'):.1%}"]
        cols += ([f"{f(inh, 'attention_uJ') / f(dot, 'attention_uJ'):.2f}", f"{f(inh, 'energy_uJ') / f(dot, 'energy_uJ'):.4f}"]
                 if inh else ["-", "-"])
        cols += [f"{f(dot, 'latency_us') / batch:,.0f}", f"{f(dot, 'ideal_latency_us') / batch:,.0f}",
                 f"{f(dot, 'utilisation'):.0%}",
                 f"{f(dot, 'area_mm2'):.2f} / {f(inh, 'area_mm2'):.2f}" if inh else f"{f(dot, 'area_mm2'):.2f}"]
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="scenarios.csv of a demo run (or hwsim cost --csv)")
    parser.add_argument("--lengths", default="32,128,512", help="sequence lengths to show (default 32,128,512)")
    args = parser.parse_args()
    print(table(load(args.csv), tuple(int(x) for x in args.lengths.split(","))))


if __name__ == "__main__":
    main()
