"""The demo's outputs: report.json, report.csv, summary.md and two plots.

Every figure is derived here from the run reports (counts), the energy table and the training
metrics; `check_consistency` re-derives the totals so a test can assert that the parts add up and
that energy equals counts x table.
"""
from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from pathlib import Path

from hwsim.energy import EnergyTable, is_action, price
from hwsim.report import COMPONENTS, csv_text, label_variants, load_run_report, summarise
from models.files import write_text_atomic

ACTION_RE = re.compile(r"^(?P<action>[a-z.]+)@(?P<width>[0-9x]+)$")


def action_totals(per_node: dict[str, dict[str, int]], samples: int) -> dict[str, dict[str, float]]:
    """Per inference: {action: {width: count}} over all nodes (memory keys included)."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for counts in per_node.values():
        for key, c in counts.items():
            m = ACTION_RE.match(key)
            action, width = (m["action"], m["width"]) if m else (key, "")
            out[action][width] += c / samples
    return {a: dict(sorted(w.items(), key=lambda kv: _width_key(kv[0]))) for a, w in sorted(out.items())}


def _width_key(width: str) -> tuple[int, ...]:
    return tuple(int(p) for p in width.split("x") if p.isdigit())


def variant_figures(report_path: Path, metrics: dict, bits: int, variant: str, table: EnergyTable,
                    params: int) -> dict:
    """One variant's row of the study."""
    report = load_run_report(report_path)
    raw = json.loads(Path(report_path).read_text())
    summary = summarise(report, table)
    comp = {name: v[2] for name, v in summary.groups["component"].items()}
    total = summary.groups["total"]["total"][2]
    actions = action_totals(raw["counts"]["per_node"], report.samples)
    arithmetic = sum(v for k, v in comp.items() if k != "memory")
    return {
        "float_accuracy": metrics[f"float-{variant}"]["test"]["accuracy"],
        f"int{bits}_accuracy_qat_eval": metrics[f"int{bits}-{variant}"]["test"]["accuracy"],
        f"int{bits}_accuracy_hwsim": report.accuracy,
        "test_samples": report.samples,
        "mean_tokens": report.mean_seq_len,
        "ort_checked": raw.get("ort_checked", 0),
        "parameters": params,
        "actions_per_inference": actions,
        "energy_pj": {"by_component": comp, "total": total, "arithmetic": arithmetic},
        "attention_share_total": comp.get("attention", 0.0) / total if total else 0.0,
        "attention_share_arithmetic": comp.get("attention", 0.0) / arithmetic if arithmetic else 0.0,
    }


def check_consistency(result: dict, reports: dict[str, Path], table: EnergyTable) -> None:
    """Raise AssertionError unless components sum to the total and the total equals
    sum(count x table entry) recomputed from the raw run report."""
    for variant, row in result["variants"].items():
        e = row["energy_pj"]
        parts = sum(e["by_component"].values())
        assert abs(parts - e["total"]) <= 1e-6 * max(1.0, e["total"]), (variant, parts, e["total"])
        raw = json.loads(Path(reports[variant]).read_text())
        recomputed = 0.0
        for counts in raw["counts"]["per_node"].values():
            recomputed += sum(count * table.pj[key] for key, count in counts.items() if is_action(key))
        recomputed /= raw["samples"]
        assert abs(recomputed - e["total"]) <= 1e-6 * max(1.0, e["total"]), (variant, recomputed, e["total"])


def _fmt_acc(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def _sum_action(actions: dict, action: str) -> float:
    return sum(actions.get(action, {}).values())


def _shown_path(path: str) -> str:
    """`path` relative to the project folder when it lies inside it (the packaged tables), else as is."""
    root, full = Path(__file__).resolve().parents[1], Path(path).resolve()
    return str(full.relative_to(root)) if full.is_relative_to(root) else str(path)


def _table_head(cells: list[str]) -> list[str]:
    """A Markdown table's header and delimiter rows (equal cell counts, or no table is recognised)."""
    return ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells)]


def _mcnemar_line(m: dict, bits: int) -> str:
    return (f"Paired McNemar test, int{bits} inhibitor vs int{bits} dot on the {m['n']} test snippets (hwsim "
            f"predictions): inhibitor right where dot is wrong {m['a_right_b_wrong']}, the reverse "
            f"{m['a_wrong_b_right']}, exact two-sided p = {m['p_value']:.3g}.")


def summary_markdown(result: dict) -> str:
    bits = result["config"]["bits"]
    rows = result["variants"]
    lines = [
        "# Energy study: dot-product vs inhibitor vs symmetric attention on integer hardware",
        "",
        f"Energy figures are **estimates from operation counts** priced with `{result['energy_table']}` "
        "(Horowitz, ISSCC 2014, 45 nm; interpolated widths marked in the table), not measurements.",
        f"RT snippets test split ({next(iter(rows.values()))['test_samples']} snippets, split by movie); "
        f"each snippet simulated bit for bit at its own length. Wall time: {result['timings']['total_s']:.0f} s.",
        *([f"Float teacher (GELU, dot): {_fmt_acc(result['teacher_accuracy'])} %; float acc % below is each "
           "float student's (ReLU, distilled)."] if result.get("teacher_accuracy") is not None else []),
        *([_mcnemar_line(result["mcnemar_inhibitor_vs_dot"], bits)] if result.get("mcnemar_inhibitor_vs_dot") else []),
        "",
        *_table_head(["variant", "float acc %", f"int{bits} acc % (QAT eval)", f"int{bits} acc % (hwsim)",
                      "params", "mults / inf", "adds / inf", "cmps / inf", "DRAM+SRAM words / inf",
                      "energy / inf (nJ)", "linear", "attention", "normalisation", "memory",
                      "attention share (of arithmetic)"]),
    ]
    for v, r in rows.items():
        a, comp = r["actions_per_inference"], r["energy_pj"]["by_component"]
        words = sum(_sum_action(a, k) for k in a if k.startswith(("read.", "write.")))
        lines.append(
            f"| {v} | {_fmt_acc(r['float_accuracy'])} | {_fmt_acc(r[f'int{bits}_accuracy_qat_eval'])} | "
            f"{_fmt_acc(r[f'int{bits}_accuracy_hwsim'])} | {r['parameters'] / 1e6:.2f} M | "
            f"{_sum_action(a, 'mul') / 1e6:.2f} M | {_sum_action(a, 'add') / 1e6:.2f} M | "
            f"{_sum_action(a, 'cmp') / 1e6:.3f} M | {words / 1e6:.3f} M | {r['energy_pj']['total'] / 1e3:.0f} | "
            f"{comp.get('linear', 0) / 1e3:.0f} | {comp.get('attention', 0) / 1e3:.1f} | "
            f"{comp.get('normalisation', 0) / 1e3:.1f} | {comp.get('memory', 0) / 1e3:.0f} | "
            f"{100 * r['attention_share_total']:.2f}% ({100 * r['attention_share_arithmetic']:.1f}%) |")
    lines += ["", "Multiplications by operand widths per inference:", ""]
    for v, r in rows.items():
        muls = r["actions_per_inference"].get("mul", {})
        lines.append(f"- {v}: " + ", ".join(f"{w}: {c / 1e6:.3g} M" for w, c in muls.items()))
    lines += ["", "Energy per inference vs sequence length (random token ids; attention arithmetic only in "
              "parentheses), nJ:", "", *_table_head(["tokens", *result["sweep"]])]
    lengths = sorted({n for pts in result["sweep"].values() for n, _, _ in pts})
    for n in lengths:
        cells = []
        for pts in result["sweep"].values():
            hit = [(t, att) for m, t, att in pts if m == n]
            cells.append(f"{hit[0][0] / 1e3:.0f} ({hit[0][1] / 1e3:.1f})" if hit else "")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "Plots: `energy_breakdown.png`, `energy_vs_seq_len.png`, `attention_energy_vs_seq_len.png`.", ""]
    return "\n".join(lines)


def paired_test(cfg, reports: dict[str, Path]) -> dict | None:
    """McNemar test (`quant.data.metrics.mcnemar`) of the int8 inhibitor against the int8 dot on the
    simulated test split (hwsim's predictions), or None without both reports."""
    if not {"dot", "inhibitor"} <= set(reports):
        return None
    from quant.data.metrics import mcnemar
    from quant.data.tasks import load_split
    labels = load_split("rt", "test", limit=cfg.limit).labels
    pred = {v: json.loads(Path(reports[v]).read_text())["predictions"] for v in ("inhibitor", "dot")}
    return mcnemar(pred["inhibitor"], pred["dot"], labels)


def write_outputs(cfg, metrics: dict, models: dict[str, Path], reports: dict[str, Path], series: dict,
                  table: EnergyTable, timings: dict, costs: tuple[list, list] | None = None) -> dict:
    """`costs` = (scenario table results, scenarios) from `hwsim.cost.table.scenario_costs`."""
    from dataclasses import asdict

    from hwsim.graph import load_plan
    from hwsim.plots import energy_stack, energy_vs_seq_len

    out = Path(cfg.out)
    variants = {}
    for v, path in reports.items():
        params = sum(int(a.size) for a in load_plan(models[v]).params.values())
        variants[v] = variant_figures(path, metrics, cfg.bits, v, table, params)
    result = {"config": asdict(cfg), "timings": timings, "energy_table": _shown_path(table.path),
              "technology": table.technology, "note": "energy = estimates from op counts x energy table",
              "variants": variants, "sweep": {v: [list(p) for p in pts] for v, pts in series.items()},
              "teacher_accuracy": metrics["teacher"]["test"]["accuracy"] if "teacher" in metrics else None,
              "mcnemar_inhibitor_vs_dot": paired_test(cfg, reports)}
    check_consistency(result, reports, table)
    summary = summary_markdown(result)
    if costs is not None:
        from hwsim.cost.table import csv_text as cost_csv, markdown as cost_markdown, plot_energy_vs_length

        results, scenarios = costs
        result["scenarios"] = list(csv.DictReader(io.StringIO(cost_csv(results))))
        summary += ("\n## On accelerator scenarios (ZigZag mappings; `scenarios.csv`, "
                    "`energy_vs_seq_len_by_scenario.png`)\n\n" + cost_markdown(results, scenarios))
        write_text_atomic(out / "scenarios.csv", cost_csv(results))
        plot_energy_vs_length(results, out / "energy_vs_seq_len_by_scenario.png")
    write_text_atomic(out / "report.json", json.dumps(result, indent=1) + "\n")
    summaries = [summarise(r, table) for r in label_variants([load_run_report(p) for p in reports.values()],
                                                             [str(p) for p in reports.values()])]
    write_text_atomic(out / "report.csv", csv_text(summaries))
    write_text_atomic(out / "summary.md", summary)
    energy_stack({v: r["energy_pj"]["by_component"] for v, r in variants.items()}, COMPONENTS,
                 out / "energy_breakdown.png", title="Energy per inference by component (RT test split)")
    energy_vs_seq_len({v: [(n, t) for n, t, _ in pts] for v, pts in series.items()}, out / "energy_vs_seq_len.png")
    energy_vs_seq_len({v: [(n, a) for n, _, a in pts] for v, pts in series.items()},
                      out / "attention_energy_vs_seq_len.png",
                      title="Attention arithmetic energy per inference vs sequence length")
    return result
