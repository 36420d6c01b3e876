"""The demo's outputs: report.json, report.csv, scenarios.csv, summary.md and its plots.

The summary opens with the answer (`hwsim.app.demo_answer`, from the scenario table), then the accuracy,
the scenario details and, last, the op-count-only view (`today`'s rules). Every figure is derived
here from the run reports (counts), the scenario costs, the energy table and the training metrics;
`check_consistency` re-derives the totals so a test can assert that the parts add up and that
energy equals counts x table.
"""
from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from pathlib import Path

from hwsim.sim.actions import MEMORY_PREFIXES, ActionKey
from hwsim.cost.energy import EnergyTable
from hwsim.cost.report import COMPONENTS, csv_text, label_variants, load_run_report, summarise
from models import variants as registry
from models.files import write_text_atomic

TODAY_PLOTS = ("energy_breakdown.png", "energy_vs_seq_len.png", "attention_energy_vs_seq_len.png")
"""The op-count-only view's plots (`today`'s rules), written under these names for the README's copies."""


def action_totals(per_node: dict[str, dict[str, int]], samples: int) -> dict[str, dict[str, float]]:
    """Per inference: {action: {width: count}} over all nodes (memory keys included)."""
    out: dict[str, dict[ActionKey, float]] = defaultdict(lambda: defaultdict(float))
    for counts in per_node.values():
        for key, c in counts.items():
            action = ActionKey.parse(key)
            out[action.action][action] += c / samples
    return {a: {k.width: c for k, c in sorted(w.items(), key=lambda kv: kv[0].bits)} for a, w in sorted(out.items())}


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
            recomputed += sum(count * table.pj[key] for key, count in counts.items() if ActionKey.parse(key).is_priced)
        recomputed /= raw["samples"]
        assert abs(recomputed - e["total"]) <= 1e-6 * max(1.0, e["total"]), (variant, recomputed, e["total"])


def _fmt_acc(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def _sum_action(actions: dict, action: str) -> float:
    return sum(actions.get(action, {}).values())


def _shown_path(path: str) -> str:
    """`path` relative to the project folder when it lies inside it (the packaged tables), else as is."""
    root, full = Path(__file__).resolve().parents[2], Path(path).resolve()
    return str(full.relative_to(root)) if full.is_relative_to(root) else str(path)


def _table_head(cells: list[str]) -> list[str]:
    """A Markdown table's header and delimiter rows (equal cell counts, or no table is recognised)."""
    return ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells)]


def _mcnemar_line(variant: str, m: dict, bits: int) -> str:
    return (f"Paired McNemar test, int{bits} {variant} vs int{bits} dot on the {m['n']} test snippets (hwsim "
            f"predictions): {variant} right where dot is wrong {m['a_right_b_wrong']}, the reverse "
            f"{m['a_wrong_b_right']}, exact two-sided p = {m['p_value']:.3g}.")


def _table_rows(head: list[str], rows: list[list[str]]) -> list[str]:
    return [*_table_head(head), *("| " + " | ".join(r) + " |" for r in rows)]


def accuracy_section(result: dict) -> list[str]:
    """The set-up and the accuracy of every variant, with the paired tests against the baseline (dot)."""
    bits, rows, name = result["config"]["bits"], result["variants"], registry.baseline()
    base = rows.get(name, {}).get(f"int{bits}_accuracy_hwsim")
    lines = [
        "## Accuracy (RT test split)", "",
        f"RT snippets test split ({next(iter(rows.values()))['test_samples']} snippets, split by movie); "
        f"each snippet simulated bit for bit at its own length (mean {next(iter(rows.values()))['mean_tokens']:.1f} "
        f"tokens). Wall time: {result['timings']['total_s']:.0f} s.",
        *([f"Float teacher (GELU, dot): {_fmt_acc(result['teacher_accuracy'])} %; float acc % below is each "
           "float student's (ReLU, distilled)."] if result.get("teacher_accuracy") is not None else []),
        *[_mcnemar_line(v, m, bits) for v, m in (result.get(f"mcnemar_vs_{name}") or {}).items() if m], ""]
    table = []
    for v, r in rows.items():
        hw = r[f"int{bits}_accuracy_hwsim"]
        diff = "" if v == name or hw is None or base is None else f"{100 * (hw - base):+.2f}"
        table.append([v, _fmt_acc(r["float_accuracy"]), _fmt_acc(r[f"int{bits}_accuracy_qat_eval"]), _fmt_acc(hw),
                      diff, f"{r['parameters'] / 1e6:.2f} M"])
    return lines + _table_rows(["variant", "float acc %", f"int{bits} acc % (QAT eval)", f"int{bits} acc % (hwsim)",
                                f"int{bits} vs int{bits} {name} (points)", "params"], table) + [""]


def today_section(result: dict) -> list[str]:
    """The op-count-only view: `today`'s memory rules priced with the energy table."""
    rows = result["variants"]
    lines = [
        "## Op-count-only view (`today`'s rules: weights streamed from DRAM per sample, no operand delivery)", "",
        f"Energy figures here are **estimates from operation counts** priced with `{result['energy_table']}` "
        "(Horowitz, ISSCC 2014, 45 nm; interpolated widths marked in the table), not measurements; memory is "
        "counted by hwsim's own rules (`hwsim/sim/configs/default.json`), without a mapping.", ""]
    table = []
    for v, r in rows.items():
        a, comp = r["actions_per_inference"], r["energy_pj"]["by_component"]
        words = sum(_sum_action(a, k) for k in a if k.startswith(MEMORY_PREFIXES))
        table.append([v, f"{_sum_action(a, 'mul') / 1e6:.2f} M", f"{_sum_action(a, 'add') / 1e6:.2f} M",
                      f"{_sum_action(a, 'cmp') / 1e6:.3f} M", f"{words / 1e6:.3f} M",
                      f"{r['energy_pj']['total'] / 1e3:.0f}", f"{comp.get('linear', 0) / 1e3:.0f}",
                      f"{comp.get('attention', 0) / 1e3:.1f}", f"{comp.get('normalisation', 0) / 1e3:.1f}",
                      f"{comp.get('memory', 0) / 1e3:.0f}",
                      f"{100 * r['attention_share_total']:.2f}% ({100 * r['attention_share_arithmetic']:.1f}%)"])
    lines += _table_rows(["variant", "mults / inf", "adds / inf", "cmps / inf", "DRAM+SRAM words / inf",
                          "energy / inf (nJ)", "linear", "attention", "normalisation", "memory",
                          "attention share (of arithmetic)"], table)
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
    lines += ["", *(f"![{p[:-4].replace('_', ' ')}]({p})" for p in TODAY_PLOTS), ""]
    return lines


def summary_markdown(result: dict, answer: str = "", scenarios: str = "") -> str:
    """The answer first (when the scenario table was costed), then accuracy, the scenario details,
    and the op-count-only view last."""
    opening = answer or "# Energy study: dot-product vs inhibitor vs symmetric attention on integer hardware\n"
    return "\n".join([opening, *accuracy_section(result), scenarios, *today_section(result)])


def paired_tests(cfg, reports: dict[str, Path]) -> dict[str, dict]:
    """McNemar test (`quant.data.metrics.mcnemar`) of every other int8 variant against the int8 baseline
    (dot) on the simulated test split (hwsim's predictions): {variant: test}; empty without its report."""
    base = registry.baseline()
    if base not in reports:
        return {}
    from quant.data.metrics import mcnemar
    from quant.data.tasks import load_split
    labels = load_split("rt", "test", limit=cfg.recipe.limit).labels
    pred = {v: json.loads(Path(p).read_text())["predictions"] for v, p in reports.items()}
    return {v: mcnemar(pred[v], pred[base], labels) for v in reports if v != base}


def split_mean_length(reports: dict[str, Path]) -> float:
    """Mean tokens per snippet of the simulated test split (every variant simulates the same snippets)."""
    return load_run_report(next(iter(reports.values()))).mean_seq_len


def scenario_plots(out: Path, results: list, mapped: list, accuracy: dict, lengths: tuple[int, ...],
                   shown: str, split: dict, bits: int) -> dict[str, str]:
    """Write the scenario plots into `out`; returns {file name: caption}, the answer's pictures first."""
    from hwsim.app import demo_answer as da
    from hwsim.cost.table import plot_energy_vs_length
    from hwsim.cost.plots import accuracy_vs_energy, share_vs_seq_len_panels, stacked_bar_panels

    stacked_bar_panels(split, out / f"energy_split_{shown}.png")
    accuracy_vs_energy(da.accuracy_energy_points(mapped, accuracy, lengths[0]), out / "accuracy_vs_energy.png",
                       lengths[0])
    share_vs_seq_len_panels(da.attention_share_series(mapped), out / "attention_share_vs_seq_len.png",
                            "attention's share of energy per\ninference, % (model estimate)", mark=lengths[0])
    plot_energy_vs_length(results, out / "energy_vs_seq_len_by_scenario.png")
    return {f"energy_split_{shown}.png": f"energy per inference on `{shown}` by where it goes and by component",
            "accuracy_vs_energy.png": f"int{bits} accuracy against energy per inference at {lengths[0]} tokens, "
                                      "every mapped scenario",
            "attention_share_vs_seq_len.png": "attention's share of the energy per inference against length",
            "energy_vs_seq_len_by_scenario.png": "energy per inference against length, every scenario"}


def scenario_outputs(out: Path, result: dict, results: list, scenarios: list) -> tuple[str, str]:
    """From the scenario table: the answer (into `result["answer"]`), scenarios.csv, the scenario plots;
    returns the answer's Markdown and the scenario section's."""
    from hwsim.app import demo_answer as da
    from hwsim.cost.table import csv_text as cost_csv, markdown as cost_markdown

    bits, rows = result["config"]["bits"], result["variants"]
    first = next(iter(rows.values()))
    mapped = da.mapped_results(results, [s.name for s in scenarios if s.kind == "mapped"])
    lengths = da.answer_lengths(first["mean_tokens"], [r.seq_len for r in results])
    accuracy = {v: r[f"int{bits}_accuracy_hwsim"] for v, r in rows.items()}
    acc = da.accuracy_figures(accuracy, result.get(f"mcnemar_vs_{registry.baseline()}") or {})
    answer = da.answer_rows(mapped, lengths)
    shown = mapped[0].scenario if mapped else da.DEFAULT_SCENARIO
    split = da.split_panels(mapped, shown, lengths)
    result["scenarios"] = list(csv.DictReader(io.StringIO(cost_csv(results))))
    result["answer"] = {"lengths": list(lengths), "scenario_shown": shown, "rows": answer, "accuracy": acc,
                        "energy_split_pj": split}
    write_text_atomic(out / "scenarios.csv", cost_csv(results))
    plots = scenario_plots(out, results, mapped, accuracy, lengths, shown, split, bits)
    params = {v: r["parameters"] for v, r in rows.items()}
    answer_md = da.answer_markdown(answer, acc, bits, first["test_samples"], params) if answer else ""
    pictures = "\n".join(f"![{t}]({p})" for p, t in plots.items())
    excerpt = [r for r in mapped if r.scenario == shown and r.seq_len in lengths]
    section = (f"## On accelerator scenarios (ZigZag mappings; `{shown}` at {' and '.join(map(str, lengths))} "
               f"tokens below, every scenario and length in `scenarios.csv`)\n\n{pictures}\n\n"
               + cost_markdown(excerpt, scenarios))
    return answer_md, section


def write_outputs(cfg, metrics: dict, models: dict[str, Path], reports: dict[str, Path], series: dict,
                  table: EnergyTable, timings: dict, costs: tuple[list, list] | None = None) -> dict:
    """`costs` = (scenario table results, scenarios) from `hwsim.cost.table.scenario_costs`."""
    from hwsim.app.demo import config_dict
    from hwsim.sim.graph import load_plan
    from hwsim.cost.plots import energy_stack, energy_vs_seq_len

    out = Path(cfg.out)
    variants = {}
    for v, path in reports.items():
        params = sum(int(a.size) for a in load_plan(models[v]).params.values())
        variants[v] = variant_figures(path, metrics, cfg.recipe.bits, v, table, params)
    tests, base = paired_tests(cfg, reports), registry.baseline()
    result = {"config": config_dict(cfg), "timings": timings, "energy_table": _shown_path(table.path),
              "technology": table.technology, "note": "energy = estimates from op counts x energy table",
              "variants": variants, "sweep": {v: [list(p) for p in pts] for v, pts in series.items()},
              "teacher_accuracy": metrics["teacher"]["test"]["accuracy"] if "teacher" in metrics else None,
              f"mcnemar_vs_{base}": tests,
              **{f"mcnemar_{v}_vs_{base}": tests.get(v) for v in registry.subjects()}}
    check_consistency(result, reports, table)
    answer, scenario_md = scenario_outputs(out, result, *costs) if costs is not None else ("", "")
    write_text_atomic(out / "report.json", json.dumps(result, indent=1) + "\n")
    summaries = [summarise(r, table) for r in label_variants([load_run_report(p) for p in reports.values()],
                                                             [str(p) for p in reports.values()])]
    write_text_atomic(out / "report.csv", csv_text(summaries))
    write_text_atomic(out / "summary.md", summary_markdown(result, answer, scenario_md))
    energy_stack({v: r["energy_pj"]["by_component"] for v, r in variants.items()}, COMPONENTS,
                 out / TODAY_PLOTS[0], title="Energy per inference by component (op counts, `today`'s rules)")
    energy_vs_seq_len({v: [(n, t) for n, t, _ in pts] for v, pts in series.items()}, out / TODAY_PLOTS[1])
    energy_vs_seq_len({v: [(n, a) for n, _, a in pts] for v, pts in series.items()}, out / TODAY_PLOTS[2],
                      title="Attention arithmetic energy per inference vs sequence length")
    return result
