"""The README's accuracy table, generated from a demo record (`demo_out/report.json`), not typed.

    PYTHONPATH=. .venv/bin/python bench/readme_accuracy.py demo_out/report.json

One row per variant: float student and int8 test accuracy (the QAT evaluation and hwsim's bit-exact run),
the int8 difference to the int8 dot with its paired McNemar test, and the parameter count; the float
teacher first. The record's settings (cut, seed, max length) are printed above the table.
"""
from __future__ import annotations

import argparse
import json


def table(report: dict) -> str:
    cfg, variants = report["config"], report["variants"]
    mcnemar = report.get("mcnemar_vs_dot", {})
    dot = variants["dot"]["int8_accuracy_hwsim"]
    n = variants["dot"]["test_samples"]
    lines = [f"RT test split, {n} snippets (mean {variants['dot']['mean_tokens']:.1f} tokens); demo settings: "
             f"max length {cfg['max_length']}, seed {cfg['seed']}, teacher on {cfg['teacher_train_limit'] or 'all'} "
             f"training snippets, float students on {cfg['student_train_limit'] or 'all'}, QAT on "
             f"{cfg['qat_train_limit'] or 'all'}.", "",
             "| variant | float % | int8 % (QAT evaluation) | int8 % (hwsim, bit-exact) | int8 vs int8 dot | "
             "McNemar (right only here / only dot) | p | parameters |", "|---|---|---|---|---|---|---|---|",
             f"| teacher (dot, GELU, float) | {100 * report['teacher_accuracy']:.2f} | | | | | | |"]
    for name, v in variants.items():
        m = mcnemar.get(name)
        diff = "" if name == "dot" else f"{100 * (v['int8_accuracy_hwsim'] - dot):+.2f}"
        pair = f"{m['a_right_b_wrong']} / {m['a_wrong_b_right']}" if m else ""
        p = f"{m['p_value']:.2g}" if m else ""
        lines.append(f"| {name} | {100 * v['float_accuracy']:.2f} | {100 * v['int8_accuracy_qat_eval']:.2f} | "
                     f"{100 * v['int8_accuracy_hwsim']:.2f} | {diff} | {pair} | {p} | {v['parameters'] / 1e6:.2f} M |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", help="report.json of a demo run")
    print(table(json.load(open(parser.parse_args().report, encoding="utf-8"))))


if __name__ == "__main__":
    main()
