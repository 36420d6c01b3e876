"""`hwsim cost MODEL.onnx [MODEL.onnx ...]`: what the models cost on accelerator scenarios.

For every scenario (`--scenario NAME|FILE`, repeatable; default every packaged one) and sequence
length (`--lengths`, default 16..512), prints energy per inference split by where it is spent
(DRAM, buffer, register file, PE-to-PE links, arithmetic, leakage), latency, PE utilisation, area,
attention's share and the inhibitor/dot ratios; `--csv`, `--markdown` and `--plot` write them.
Everything is computed before any file is written, so an error leaves no output. Model estimates,
not measurements.
"""
from __future__ import annotations

import argparse
import os


def add_scenario_argument(parser: argparse.ArgumentParser, default_all: bool) -> None:
    parser.add_argument("--scenario", action="append", default=None, metavar="NAME|FILE",
                        help="accelerator scenario: a packaged name (today, edge, resident, batch8, batch32, "
                             "attention_unit, server; edge_same_area, costed only when named), a scenario YAML "
                             "file, either with @N or @IxW for PEs of that operand width (edge@4); repeatable"
                             + (" (default: every packaged scenario)" if default_all else ""))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL.onnx", help="integer ONNX models written by `hwsim export`")
    add_scenario_argument(parser, default_all=True)
    parser.add_argument("--lengths", default="16,32,64,128,256,512", help="sequence lengths (comma-separated)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes for the mappings (all cores)")
    parser.add_argument("--energy-table", default=None, metavar="FILE", help="energy table CSV (default: packaged)")
    parser.add_argument("--csv", default=None, metavar="OUT.csv", help="write the scenario table as CSV")
    parser.add_argument("--markdown", default=None, metavar="OUT.md", help="write the scenario table as Markdown")
    parser.add_argument("--plot", default=None, metavar="OUT.png", help="energy vs sequence length per scenario")


def parse_lengths(text: str) -> tuple[int, ...]:
    from models.errors import UserError

    try:
        lengths = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"--lengths {text!r}: give comma-separated positive integers, e.g. 16,128,512") from None
    if not lengths or min(lengths) < 1:
        raise UserError(f"--lengths {text!r}: give comma-separated positive integers, e.g. 16,128,512")
    return lengths


def load_scenarios(names: list[str] | None) -> list:
    from hwsim.cost.scenario import load_scenario, packaged_names

    return [load_scenario(n) for n in (names or packaged_names())]


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hwsim.cost.table import csv_text, load_tables, markdown, plot_energy_vs_length, scenario_costs
    from models.errors import UserError
    from models.files import write_text_atomic

    scenarios = load_scenarios(args.scenario)
    lengths = parse_lengths(args.lengths)
    for m in args.models:
        if not Path(m).exists():
            raise UserError(f"model {m} not found; write one with `hwsim export`")
    tables = load_tables(args.energy_table)
    labels = [Path(m).stem for m in args.models]
    if len(set(labels)) != len(labels):
        labels = [str(m) for m in args.models]
    results = scenario_costs(dict(zip(labels, args.models)), scenarios, lengths, tables, jobs=max(args.jobs, 1),
                             say=lambda msg: print(msg, flush=True))
    text = markdown(results, scenarios)
    print(text, end="")
    if args.csv:
        write_text_atomic(args.csv, csv_text(results))
        print(f"wrote {args.csv}")
    if args.markdown:
        write_text_atomic(args.markdown, text)
        print(f"wrote {args.markdown}")
    if args.plot:
        plot_energy_vs_length(results, args.plot)
        print(f"wrote {args.plot}")
    return 0
