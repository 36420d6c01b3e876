"""`hwsim report A.json [B.json ...]`: price run reports with an energy table and compare variants.

Prints per-layer, per-op-type and per-component energy and arithmetic actions per inference side by
side; optionally writes a long-format CSV (`--csv`) and a stacked bar chart by component (`--plot`).
Everything is validated and priced before any file is written, so an error leaves no output.
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", nargs="+", metavar="REPORT.json", help="run reports written by `hwsim run`")
    parser.add_argument("--energy-table", default=None, metavar="FILE",
                        help="energy table CSV (default: packaged Horowitz 45 nm table)")
    parser.add_argument("--technology", default=None, help="technology rows of the table to use (default: the only one)")
    parser.add_argument("--csv", default=None, metavar="OUT.csv", help="write the figures as CSV")
    parser.add_argument("--plot", default=None, metavar="OUT.png", help="write a stacked bar chart by component")
    from hwsim.app.cost_cli import add_scenario_argument
    add_scenario_argument(parser, default_all=False)


def run(args: argparse.Namespace) -> int:
    from hwsim.cost import report as rep
    from hwsim.cost.energy import load_table
    from models.files import write_text_atomic

    table = load_table(args.energy_table, args.technology)
    reports = rep.label_variants([rep.load_run_report(p) for p in args.reports], args.reports)
    summaries = [rep.summarise(r, table) for r in reports]
    cost_text = None
    if args.scenario:
        from hwsim.cost.table import costs_at_mean_length, load_tables, markdown
        from hwsim.app.cost_cli import load_scenarios

        scenarios = load_scenarios(args.scenario)
        results = costs_at_mean_length([(r.label, r.model, r.mean_seq_len) for r in reports], scenarios,
                                       load_tables(args.energy_table, args.technology))
        cost_text = markdown(results, scenarios)
    print(rep.format_tables(summaries, table), end="")
    if cost_text:
        print(f"\nOn accelerator scenarios, each run at its mean length:\n{cost_text}", end="")
    if args.csv:
        write_text_atomic(args.csv, rep.csv_text(summaries))
        print(f"wrote {args.csv}")
    if args.plot:
        from hwsim.cost.plots import energy_stack

        energy_stack({s.report.label: s.energy("component") for s in summaries}, rep.COMPONENTS, args.plot)
        print(f"wrote {args.plot}")
    return 0
