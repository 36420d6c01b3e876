"""`hwsim widths`: accuracy against energy for every attention variant as the widths drop (issue 21).

    hwsim widths [--widths w8a8,w6a6,w4a8,w4a4] [--seeds 0,1] [--variants dot,inhibitor,symmetric] [--cut]
                 [the recipe flags of hwsim study] [--out study_out] [--results results]
                 [--report widths_out] [--scenario NAME|FILE ...] [--lengths 32,512]

1. For each width setting, `hwsim study` at that setting into one study folder: the teacher and the
   float students do not depend on the widths, so they are trained once and shared by every setting;
   the QAT students, their exports and hwsim's simulations are per setting (`StudyConfig.quant_stage`);
   one ledger record per seed and setting (each setting is a recipe fingerprint of its own).
2. Accuracy per setting and variant from the ledger (records of the same recipes from earlier runs
   count): hwsim's test accuracy, mean over seeds with a Student t 95 % interval over seeds; per
   setting each variant minus the baseline (`hwsim.app.ledger_stats.compare`: pooled paired bootstrap,
   McNemar); and whether a variant loses less than the baseline as the widths drop, the difference of
   differences `(variant at w - variant at the first setting) - (baseline at w - baseline at the
   first setting)` per test example over the seeds all four share, with a bootstrap interval.
3. Energy per inference of each setting's models (the first seed's exports) on every scenario at every
   length (`hwsim.cost.table.scenario_costs`): the total and attention's share.
4. Writes, into `--report`, widths.md (the tables), widths.csv (one row per scenario, setting,
   variant and length), pareto-<scenario>.png (accuracy against energy, a panel per length, a line per
   variant through the settings) and attention-width.png (attention's energy against the width of
   its arithmetic, a panel per scenario, at the longest length). Everything is computed before any
   file is written.

`--cut` runs the demo's 20-minute cut (`StudyConfig.cut`) instead of the whole recipe; the report
says which recipe its records are of.
"""
from __future__ import annotations

import argparse
import csv
import io
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from models import variants as registry
from models.errors import UserError

@dataclass(frozen=True)
class SweepConfig:
    """What the sweep reports on (none of it changes a result): settings, scenarios, lengths, folder."""
    widths: tuple[str, ...] = ("w8a8", "w6a6", "w4a8", "w4a4")
    scenarios: tuple[str, ...] = ("edge", "edge_same_area")  # the edge array, and 4-bit PEs in its area
    lengths: tuple[int, ...] = (32, 512)
    report: str = "widths_out"

    def __post_init__(self) -> None:
        if not self.widths or len(set(self.widths)) != len(self.widths):
            raise UserError(f"--widths must name distinct width settings, got {','.join(self.widths)}")
        if not self.lengths or min(self.lengths) < 1:
            raise UserError(f"--lengths must be positive token counts, got {self.lengths}")


# ---------------------------------------------------------------- width settings

def width_recipe(base, name: str):
    """The study recipe `base` at width setting `name` (`quant.qat.widths.WIDTHS`). A uniform setting
    W<N>A<N> is `--bits N`, so `w8a8` is the plain recipe (its records and cached stages are the
    study's own); the others are `--widths NAME`."""
    from quant.qat.widths import uniform, width_setting

    setting = width_setting(name)
    if setting == uniform(setting.weight_bits):
        return replace(base, bits=setting.weight_bits, widths=None)
    return replace(base, bits=8, widths=name)


def attention_width(name: str) -> int:
    """Operand width of attention's arithmetic (q, k, v and the context) at setting `name`."""
    from quant.qat.widths import width_setting
    return width_setting(name).attn_bits


# ---------------------------------------------------------------- accuracy over the ledger

def accuracy_by_setting(records: list[tuple], fingerprints: dict[str, str]) -> dict[str, dict]:
    """{setting: {variant: {"mean", "low", "high", "seeds"}}} from the records of each setting's recipe
    (hwsim's test accuracy; t interval over seeds, None with one seed); settings without records are
    left out."""
    from hwsim.app.ledger_stats import by_recipe, t_interval

    groups = by_recipe(records)
    out: dict[str, dict] = {}
    for setting, fp in fingerprints.items():
        if fp not in groups:
            continue
        runs = [groups[fp]["seeds"][s] for s in sorted(groups[fp]["seeds"])]
        per = {}
        for v in dict.fromkeys(v for r in runs for v in r["variants"]):
            held = [r for r in runs if v in r["variants"]]
            mean, lo, hi = t_interval([r["variants"][v]["int8"]["test_accuracy_hwsim"] for r in held])
            per[v] = {"mean": mean, "low": lo, "high": hi, "seeds": [r["seed"] for r in held],
                      "hwsim_equals_qat": all(r["variants"][v]["int8"]["hwsim_equals_qat"] for r in held)}
        out[setting] = per
    return out


def above_chance(runs: list[dict], variant: str, alpha: float = 0.05) -> tuple[bool, float]:
    """(whether `variant`'s test accuracy pooled over `runs` is above the majority-class rate, that rate):
    a one-sided exact binomial test of its right answers against always answering the test split's
    commonest label (p < `alpha`). A model that is not may have collapsed to one class, and a
    difference of differences against it measures how far each side had to fall to that floor."""
    import scipy.stats

    from hwsim.app.ledger_stats import pooled_gold, right_of

    gold = pooled_gold(runs)
    rate = float(np.bincount(gold).max() / len(gold))
    right = int(sum(right_of(r, variant).sum() for r in runs))
    return scipy.stats.binomtest(right, len(gold), rate, alternative="greater").pvalue < alpha, rate


def paired_by_setting(records: list[tuple], fingerprints: dict[str, str]) -> list[dict]:
    """Per setting and subject variant: subject - baseline (pooled paired bootstrap and McNemar over the
    setting's seeds), and the difference of differences against the first setting (None for it, or
    without common seeds): how much more (positive) or less the subject keeps than the baseline.
    `floor`: the two variants (of subject and baseline) not above the majority-class rate at this
    setting (`above_chance`), and that rate."""
    from hwsim.app.ledger_stats import BASE, bootstrap_mean, by_recipe, compare, right_of

    groups = by_recipe(records)
    settings = [s for s in fingerprints if fingerprints[s] in groups]
    if not settings:
        return []
    ref = groups[fingerprints[settings[0]]]["seeds"]
    out = []
    for setting in settings:
        seeds = groups[fingerprints[setting]]["seeds"]
        runs = [seeds[s] for s in sorted(seeds)]
        present = list(dict.fromkeys(v for r in runs for v in r["variants"]))
        above = {x: above_chance([r for r in runs if x in r["variants"]], x) for x in present}
        for v in present:
            if v == BASE:
                continue
            chance = {x: above[x] for x in (v, BASE) if x in above}
            row = {"setting": setting, "variant": v, "vs_base": compare(runs, v, BASE), "did": None,
                   "floor": {"variants": [x for x in chance if not chance[x][0]], "rate": chance[v][1]}}
            common = [s for s in sorted(seeds) if s in ref and all(x in seeds[s]["variants"] and x in ref[s]["variants"]
                                                                   for x in (v, BASE))]
            if setting != settings[0] and common:
                # per test snippet, summed over the seeds: the resamples draw snippets with all their seeds
                # (the seeds share the split; `ledger_stats.bootstrap_snippets`)
                d = np.stack([(right_of(seeds[s], v).astype(int) - right_of(ref[s], v))
                              - (right_of(seeds[s], BASE).astype(int) - right_of(ref[s], BASE)) for s in common]).sum(0)
                mean, lo, hi = (x / len(common) for x in bootstrap_mean(d))
                row["did"] = {"seeds": common, "n": len(d) * len(common), "diff": mean, "low": lo, "high": hi}
            out.append(row)
    return out


# ---------------------------------------------------------------- tables

CSV_COLUMNS = ("scenario", "setting", "variant", "seq_len", "accuracy", "accuracy_low", "accuracy_high", "seeds",
               "energy_uJ", "attention_uJ", "attention_width")


def sweep_rows(accuracy: dict[str, dict], costs: list, label_of: dict[str, tuple[str, str]]) -> list[dict]:
    """One row per cost cell whose (setting, variant) has accuracy: `label_of[model label] = (setting,
    variant)`."""
    rows = []
    for c in costs:
        setting, v = label_of[c.model]
        acc = accuracy.get(setting, {}).get(v)
        if acc is None:
            continue
        rows.append({"scenario": c.scenario, "setting": setting, "variant": v, "seq_len": c.seq_len,
                     "accuracy": acc["mean"], "accuracy_low": acc["low"], "accuracy_high": acc["high"],
                     "seeds": len(acc["seeds"]), "energy_uJ": c.total_pj / 1e6, "attention_uJ": c.attention_pj / 1e6,
                     "attention_width": attention_width(setting)})
    return rows


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else ("" if r[k] is None else r[k])) for k in CSV_COLUMNS})
    return buf.getvalue()


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def _pts(x) -> str:
    return "n/a" if x is None else f"{100 * x:+.2f}"


def markdown(rows: list[dict], paired: list[dict], recipe_note: str) -> str:
    """The sweep's tables: per scenario accuracy and energy per setting and variant, then the paired
    comparisons per setting."""
    lines = [f"Width sweep: {recipe_note}. Accuracy is hwsim's bit-exact test accuracy, mean over seeds "
             "[Student t 95 % interval over seeds]; energy per inference from the cost model.", ""]
    lengths = sorted({r["seq_len"] for r in rows})
    for scenario in dict.fromkeys(r["scenario"] for r in rows):
        cells = {(r["setting"], r["variant"], r["seq_len"]): r for r in rows if r["scenario"] == scenario}
        lines += [f"#### {scenario}", "",
                  "| setting | variant | test % | seeds | " + " | ".join(f"uJ @ {n} (attention)" for n in lengths) + " |",
                  "|---|---|---|---|" + "---|" * len(lengths)]
        for s, v in dict.fromkeys((k[0], k[1]) for k in cells):
            first = next(cells[(s, v, n)] for n in lengths if (s, v, n) in cells)
            ci = "" if first["accuracy_low"] is None else f" [{_pct(first['accuracy_low'])}, {_pct(first['accuracy_high'])}]"
            energy = " | ".join(f"{cells[(s, v, n)]['energy_uJ']:.3g} ({cells[(s, v, n)]['attention_uJ']:.3g})"
                                if (s, v, n) in cells else "n/a" for n in lengths)
            lines.append(f"| {s} | {v} | {_pct(first['accuracy'])}{ci} | {first['seeds']} | {energy} |")
        lines.append("")
    if paired:
        lines += ["#### Paired, per setting (int8-equivalent students; baseline: the int8 "
                  f"{registry.baseline()})", "",
                  "| setting | variant - baseline (points) | 95 % interval | McNemar p | loses less than the baseline "
                  "since the first setting (points) | 95 % interval |", "|---|---|---|---|---|---|"]
        for p in paired:
            c, d = p["vs_base"], p["did"]
            ci = "n/a" if c.get("low") is None else f"[{_pts(c['low'])}, {_pts(c['high'])}]"
            mc = f"{c['mcnemar']['p_value']:.3g}" if c.get("mcnemar") else "n/a"
            did = ("n/a", "n/a") if d is None else (_pts(d["diff"]), f"[{_pts(d['low'])}, {_pts(d['high'])}]")
            lines.append(f"| {p['setting']} | {p['variant']}: {_pts(c.get('diff'))} | {ci} | {mc} | {did[0]} | {did[1]} |")
        lines.append("")
    return "\n".join(lines)


def verdict(paired: list[dict]) -> list[str]:
    """Per setting after the first and subject: yes (interval above 0), no (below 0) or not distinguishable;
    "not informative" when the subject or the baseline is not above the majority-class rate there (the
    difference of differences then measures the distance each fell to that floor, `above_chance`)."""
    out = []
    for p in paired:
        d = p["did"]
        if d is None:
            continue
        word = "yes" if d["low"] > 0 else "no" if d["high"] < 0 else "not distinguishable"
        floor = p.get("floor") or {"variants": []}
        if floor["variants"]:
            word = (f"not informative: {' and '.join(floor['variants'])} not above always answering the "
                    f"commonest label ({_pct(floor['rate'])} %)")
        out.append(f"{p['setting']}: does {p['variant']} lose less than the {registry.baseline()}? {word} "
                   f"({_pts(d['diff'])} points [{_pts(d['low'])}, {_pts(d['high'])}], {len(d['seeds'])} seed(s))")
    return out


# ---------------------------------------------------------------- the sweep

def _say(msg: str) -> None:
    print(f"[widths {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def model_path(out: Path, seed: int, recipe, variant: str) -> Path:
    """Where the study put a seed's exported model of `variant` at `recipe`'s widths."""
    from hwsim.app.study import model_file
    return out / f"seed{seed}" / model_file(recipe, variant)


def run_sweep(base, sweep: SweepConfig, run, results: str | Path, jobs: int = 1,
              say: Callable[[str], None] = _say) -> dict[str, Path]:
    """Every setting's study, then the report; returns {name: written path}."""
    from hwsim.app.cost_cli import load_scenarios
    from hwsim.app.ledger import load_records, recipe_of
    from hwsim.app.study import run_study
    from hwsim.cost.plots import lines_panels, pareto_panels
    from hwsim.cost.table import load_tables, scenario_costs
    from models.files import write_text_atomic

    recipes = {w: width_recipe(base, w) for w in sweep.widths}
    scenarios = load_scenarios(list(sweep.scenarios))  # refuse a bad name before hours of training
    for w, recipe in recipes.items():
        say(f"width setting {w}: {recipe.quant_tag} students")
        run_study(recipe, run, results, say)
    records = load_records(Path(results))
    fps = {w: recipe_of(r)["fingerprint"] for w, r in recipes.items()}
    accuracy = accuracy_by_setting(records, fps)
    paired = paired_by_setting(records, fps)
    label_of, models = {}, {}
    for w, recipe in recipes.items():
        for v in run.variants:
            label_of[f"{v}@{w}"] = (w, v)
            models[f"{v}@{w}"] = str(model_path(Path(run.out), run.seeds[0], recipe, v))
    costs = scenario_costs(models, scenarios, sweep.lengths, load_tables(), jobs=jobs, say=say)
    rows = sweep_rows(accuracy, costs, label_of)
    note = (f"recipe {'the demo cut' if base == type(base).cut(bits=base.bits) else 'as given'} "
            f"(fingerprints {', '.join(f'{w} `{fp}`' for w, fp in fps.items())}), models of seed {run.seeds[0]}")
    text = markdown(rows, paired, note) + "\n".join(verdict(paired)) + "\n"
    longest = max(sweep.lengths)
    report = Path(sweep.report)
    report.mkdir(parents=True, exist_ok=True)
    written = {"widths.md": report / "widths.md", "widths.csv": report / "widths.csv"}
    write_text_atomic(written["widths.md"], text)
    write_text_atomic(written["widths.csv"], csv_text(rows))
    for scenario in dict.fromkeys(r["scenario"] for r in rows):
        panels = {f"{n} tokens": {v: [(r["energy_uJ"] * 1e6, r["accuracy"], r["accuracy_low"], r["accuracy_high"],
                                       r["setting"]) for r in rows
                                      if r["scenario"] == scenario and r["seq_len"] == n and r["variant"] == v]
                                  for v in run.variants} for n in sweep.lengths}
        path = report / f"pareto-{scenario}.png"
        pareto_panels(panels, path, title=f"{scenario}: accuracy against energy per inference, by width setting")
        written[path.name] = path
    attention = {s: {v: [(r["attention_width"], r["attention_uJ"] * 1e6) for r in rows
                         if r["scenario"] == s and r["seq_len"] == longest and r["variant"] == v]
                     for v in run.variants} for s in dict.fromkeys(r["scenario"] for r in rows)}
    if attention:
        written["attention-width.png"] = report / "attention-width.png"
        lines_panels(attention, written["attention-width.png"], "attention width (bits)",
                     f"attention uJ per inference @ {longest} tokens")
    print(text)
    return written


# ---------------------------------------------------------------- command line

def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hwsim.app import study

    study.add_arguments(parser, skip=("bits", "widths"))  # each setting decides them
    parser.add_argument("--widths", dest="width_settings", type=_names, default=",".join(SweepConfig.widths),
                        help="comma-separated width settings of quant.qat.widths (w8a8, w6a6, w4a8, w4a4, w8a8-att6, "
                             "w8a8-att4, w16a16)")
    parser.add_argument("--cut", action="store_true", help="the demo's 20-minute cut instead of the whole recipe "
                                                           "(recipe flags given still apply on top)")
    parser.add_argument("--report", default=SweepConfig.report, help="folder of the sweep's tables and plots")
    parser.add_argument("--scenario", action="append", default=None, metavar="NAME|FILE",
                        help="accelerator scenario to price on, e.g. edge, edge@4, edge_same_area; repeatable "
                             "(default: edge and edge_same_area; a width-pinned one prices only models of its widths)")
    parser.add_argument("--lengths", default=",".join(map(str, SweepConfig.lengths)),
                        help="sequence lengths of the energy figures, separated by commas")
    parser.add_argument("--jobs", type=int, default=1, help="processes for the cost model's mappings")


def run(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from hwsim.app.cost_cli import parse_lengths
    from hwsim.app.study import StudyConfig, config_from_args

    recipe, study_run = config_from_args(args)
    if args.no_record:
        raise UserError("hwsim widths reads the accuracies from the ledger: drop --no-record")
    if args.cut:  # the cut, with every recipe flag the user changed from its whole-recipe default on top
        given = {f.name: getattr(recipe, f.name) for f in fields(StudyConfig)
                 if getattr(recipe, f.name) != getattr(StudyConfig(), f.name)}
        recipe = StudyConfig.cut(**given)
    sweep = SweepConfig(widths=args.width_settings, scenarios=tuple(args.scenario or SweepConfig.scenarios),
                        lengths=parse_lengths(args.lengths), report=args.report)
    run_sweep(recipe, sweep, study_run, args.results, jobs=args.jobs)
    return 0
