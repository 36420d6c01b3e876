"""Aggregates of the results ledger (`hwsim.app.ledger`): per recipe and variant, over seeds.

Per recipe fingerprint, one record per seed (the latest; older records of the same seed are counted
and left out). Per variant: mean, sample standard deviation and range over seeds of the int8 test
accuracy (hwsim's, bit-exact). Comparisons against the int8 dot pool every seed's test predictions
into one paired sample:

- difference of accuracies with a paired bootstrap 95 % percentile interval that resamples test
  snippets, each with all its seeds' pairs (`bootstrap_snippets`: 10,000 resamples, numpy generator
  seeded 0): the seeds share one test split, so their pairs on one snippet are not independent
  draws, and resampling the pooled pairs one by one (`bootstrap_diff`, what the ledger did before)
  gave intervals up to sqrt(seeds) too narrow;
- McNemar's exact test on the pooled pairs (`quant.data.metrics.mcnemar`, as the demo's); it counts
  each seed's pair as its own, so with several seeds its p is optimistic: the interval is the test.

Recipe effects (`effects`): two recipes of one task and split sizes whose settings differ in at most
`MAX_CHANGED` settings (an ablation: `hwsim study --hidden-layers last` beside the plain recipe) are
compared per variant over the seeds both hold: the later recipe's int8 accuracy minus the earlier
one's, the test predictions of those seeds pooled into one paired sample (same bootstrap, McNemar).

The int8 subjects of the study (`models.variants.subjects()`: the inhibitor) vs the float teacher use
the same bootstrap when every record holds the teacher's predictions; otherwise (the demo keeps none)
the mean over seeds of the per-seed difference of accuracies with a Student t 95 % interval over seeds
(none with one seed).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import scipy.stats

from hwsim.app.ledger import unpack_labels
from models import variants as registry
from quant.data.metrics import mcnemar

BASE = registry.baseline()  # what every other variant is compared with (dot)
REPS = 10_000


def bootstrap_diff(right_a: np.ndarray, right_b: np.ndarray, reps: int = REPS, seed: int = 0) -> tuple:
    """(mean(right_a) - mean(right_b), 2.5 %, 97.5 % percentiles) over `reps` paired resamples.

    Resampling n pairs with replacement only changes how many pairs of each kind (a right only, b right
    only, both or neither) are drawn, so the resample counts are drawn from the multinomial of those
    kinds: the same distribution as resampling indices, in O(reps)."""
    a, b = np.asarray(right_a, bool), np.asarray(right_b, bool)
    n = len(a)
    kinds = np.array([np.sum(a & ~b), np.sum(~a & b)])
    draws = np.random.default_rng(seed).multinomial(n, [*(kinds / n), 1 - kinds.sum() / n], size=reps)
    diffs = (draws[:, 0] - draws[:, 1]) / n
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float((kinds[0] - kinds[1]) / n), float(lo), float(hi)


def bootstrap_mean(values, reps: int = REPS, seed: int = 0) -> tuple:
    """(mean, 2.5 %, 97.5 %) of the mean of small integer `values` (e.g. per-example differences of
    differences of right/wrong, -2..2) over `reps` resamples with replacement, drawn as multinomial
    counts of the distinct values (the same distribution as resampling indices, in O(reps))."""
    v = np.asarray(values, np.int64)
    kinds, counts = np.unique(v, return_counts=True)
    draws = np.random.default_rng(seed).multinomial(len(v), counts / len(v), size=reps)
    means = draws @ kinds / len(v)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(v.mean()), float(lo), float(hi)


def bootstrap_snippets(right_a: np.ndarray, right_b: np.ndarray, seeds: int, reps: int = REPS, seed: int = 0) -> tuple:
    """(mean(right_a) - mean(right_b), 2.5 %, 97.5 %) for `seeds` runs pooled seed after seed over one
    test split: the resamples draw test snippets, each with all its seeds' pairs (a cluster bootstrap).
    The seeds' predictions on one snippet are not independent (its difficulty is shared), so resampling
    the pooled pairs one by one (`bootstrap_diff`) draws intervals too narrow by up to sqrt(seeds); with
    one seed the two are the same function of the data, and `bootstrap_diff` (its random stream) is used."""
    a, b = np.asarray(right_a, bool), np.asarray(right_b, bool)
    if seeds == 1:
        return bootstrap_diff(a, b, reps, seed)
    per_snippet = (a.astype(np.int64) - b).reshape(seeds, -1).sum(0)  # -seeds..seeds per test snippet
    mean, lo, hi = bootstrap_mean(per_snippet, reps, seed)
    return mean / seeds, lo / seeds, hi / seeds


def paired_interval(runs: list[dict], right_a: np.ndarray, right_b: np.ndarray) -> tuple[float, float, float, str]:
    """(difference, low, high, method) of the pooled pairs of `runs`: `bootstrap_snippets` when the runs
    share one test split (their labels are equal), else `bootstrap_diff` over the pooled pairs."""
    if len({r["test_labels"] for r in runs}) == 1:
        diff, lo, hi = bootstrap_snippets(right_a, right_b, len(runs))
        unit = "test snippets" if len(runs) == 1 else f"test snippets, their {len(runs)} seeds together"
        return diff, lo, hi, f"paired bootstrap over {unit} ({REPS} resamples, seed 0)"
    diff, lo, hi = bootstrap_diff(right_a, right_b)
    return diff, lo, hi, f"paired bootstrap over pooled pairs ({REPS} resamples, seed 0)"


def t_interval(diffs: list[float]) -> tuple:
    """(mean, low, high): Student t 95 % interval of the mean over seeds; no interval with one seed."""
    d = np.asarray(diffs, float)
    if len(d) < 2:
        return float(d.mean()), None, None
    half = scipy.stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def by_recipe(records: list[tuple]) -> dict[str, dict]:
    """{fingerprint: {"seeds": {seed: record}, "superseded": k}}, the latest record of each seed."""
    groups: dict[str, dict] = defaultdict(lambda: {"seeds": {}, "superseded": 0})
    for _, r in sorted(records, key=lambda pr: pr[1]["created"]):
        g = groups[r["recipe"]["fingerprint"]]
        g["superseded"] += r["seed"] in g["seeds"]
        g["seeds"][r["seed"]] = r
    return dict(groups)


def pooled_gold(runs: list[dict]) -> np.ndarray:
    """The test labels of `runs` end to end: the order in which their predictions are pooled."""
    return np.array(unpack_labels("".join(r["test_labels"] for r in runs)))


def right_of(record: dict, variant: str) -> np.ndarray:
    """Per test example of `record`, whether the int8 `variant` got it right (bool, split order)."""
    return (np.array(unpack_labels(record["variants"][variant]["test_predictions"]))
            == np.array(unpack_labels(record["test_labels"])))


def compare(runs: list[dict], a: str, b: str) -> dict:
    """Pooled paired comparison of int8 `a` with int8 `b` (or the float teacher, b = "teacher") over
    the runs that hold both."""
    runs = [r for r in runs if a in r["variants"] and (b == "teacher" or b in r["variants"])]
    if not runs:
        return {"a": a, "b": b, "n": 0}
    if b == "teacher" and not all(r["teacher"].get("test_predictions") for r in runs):
        mean, lo, hi = t_interval([r["variants"][a]["int8"]["test_accuracy_hwsim"] - r["teacher"]["test_accuracy"]
                                   for r in runs])
        return {"a": a, "b": b, "n": len(runs), "unit": "seeds", "diff": mean, "low": lo, "high": hi,
                "method": "difference of means, t interval over seeds (no teacher predictions recorded)"}
    pa = "".join(r["variants"][a]["test_predictions"] for r in runs)
    pb = "".join((r["teacher"] if b == "teacher" else r["variants"][b])["test_predictions"] for r in runs)
    gold = pooled_gold(runs)
    ra, rb = (np.array(unpack_labels(p)) == gold for p in (pa, pb))
    diff, lo, hi, method = paired_interval(runs, ra, rb)
    return {"a": a, "b": b, "n": len(gold), "unit": "pooled test pairs", "diff": diff, "low": lo, "high": hi,
            "method": method,
            "mcnemar": mcnemar(unpack_labels(pa), unpack_labels(pb), gold.tolist())}


def summarise(records: list[tuple]) -> list[dict]:
    """One entry per recipe: its settings, seeds, commits, per-variant spread and the comparisons. A
    variant's figures are over the seeds whose records hold it (a study may run a subset)."""
    out = []
    for fp, g in by_recipe(records).items():
        runs = [g["seeds"][s] for s in sorted(g["seeds"])]
        names = list(dict.fromkeys(v for r in runs for v in r["variants"]))
        variants = {}
        for v in names:
            held = [r for r in runs if v in r["variants"]]
            acc = np.array([r["variants"][v]["int8"]["test_accuracy_hwsim"] for r in held])
            variants[v] = {"mean": float(acc.mean()), "sd": float(acc.std(ddof=1)) if len(acc) > 1 else None,
                           "min": float(acc.min()), "max": float(acc.max()),
                           "float_mean": float(np.mean([r["variants"][v]["float"]["test_accuracy"] for r in held])),
                           "hwsim_equals_qat": all(r["variants"][v]["int8"]["hwsim_equals_qat"] for r in held),
                           "seeds": [r["seed"] for r in held]}
        pairs = [(v, BASE) for v in names if v != BASE and BASE in names]
        pairs += [(v, "teacher") for v in registry.subjects() if v in names]
        out.append({"fingerprint": fp, "settings": runs[0]["recipe"]["settings"], "seeds": sorted(g["seeds"]),
                    "superseded": g["superseded"], "commits": sorted({r["commit"][:7] for r in runs}),
                    "test_n": len(runs[0]["test_labels"]),
                    "teacher_mean": float(np.mean([r["teacher"]["test_accuracy"] for r in runs])),
                    "variants": variants,
                    "comparisons": [c for c in (compare(runs, a, b) for a, b in pairs) if c["n"]]})
    return out


MAX_CHANGED = 2  # settings two recipes may differ in to be compared as an ablation


def changed_settings(a: dict, b: dict) -> dict | None:
    """{setting: (value in a, value in b)} of two recipes' hashed settings ("demo" keys; a setting one
    leaves out holds its default there, written None), or None when task or split sizes differ."""
    if a["task"] != b["task"] or a["data"] != b["data"]:
        return None
    keys = sorted(set(a["demo"]) | set(b["demo"]))
    return {k: (a["demo"].get(k), b["demo"].get(k)) for k in keys if a["demo"].get(k) != b["demo"].get(k)}


def effects(records: list[tuple]) -> list[dict]:
    """Per pair of recipes differing in 1..MAX_CHANGED settings (the older recipe, by its first record,
    is the reference) and per variant both ran on common seeds: the pooled paired difference of int8
    accuracy (changed minus reference) with its bootstrap interval and McNemar, and the per-seed
    differences."""
    groups = by_recipe(records)
    first = {fp: min(r["created"] for r in g["seeds"].values()) for fp, g in groups.items()}
    order = sorted(groups, key=lambda fp: first[fp])
    out = []
    for i, ref in enumerate(order):
        for new in order[i + 1:]:
            ga, gb = groups[ref], groups[new]
            sa, sb = (next(iter(g["seeds"].values()))["recipe"]["settings"] for g in (ga, gb))
            changed = changed_settings(sa, sb)
            if not changed or len(changed) > MAX_CHANGED:
                continue
            seeds = sorted(set(ga["seeds"]) & set(gb["seeds"]))
            for v in dict.fromkeys(v for s in seeds for v in ga["seeds"][s]["variants"]):
                held = [s for s in seeds if v in ga["seeds"][s]["variants"] and v in gb["seeds"][s]["variants"]]
                if not held:
                    continue
                ra, rb = ([g["seeds"][s] for s in held] for g in (ga, gb))
                if any(x["test_labels"] != y["test_labels"] for x, y in zip(ra, rb)):
                    continue
                pa = "".join(r["variants"][v]["test_predictions"] for r in ra)
                pb = "".join(r["variants"][v]["test_predictions"] for r in rb)
                gold = pooled_gold(ra)
                right_a, right_b = (np.array(unpack_labels(p)) == gold for p in (pa, pb))
                diff, lo, hi, _ = paired_interval(ra, right_b, right_a)
                per_seed = [y["variants"][v]["int8"]["test_accuracy_hwsim"] - x["variants"][v]["int8"]["test_accuracy_hwsim"]
                            for x, y in zip(ra, rb)]
                out.append({"reference": ref, "changed": new, "settings": changed, "variant": v, "seeds": held,
                            "n": len(gold), "diff": diff, "low": lo, "high": hi, "per_seed": per_seed,
                            "mcnemar": mcnemar(unpack_labels(pb), unpack_labels(pa), gold.tolist())})
    return out


def effects_markdown(rows: list[dict]) -> str:
    """The recipe effects as one table (empty text without any)."""
    if not rows:
        return ""
    lines = ["### Recipe effects (int8, hwsim; changed recipe minus reference, pooled over common seeds)", "",
             "| setting(s): reference -> changed | variant | seeds | difference (points) | 95 % interval | "
             "per seed | McNemar (changed only / reference only) | p |", "|---|---|---|---|---|---|---|---|"]
    for e in rows:
        what = "; ".join(f"{k}: {'default' if a is None else a} -> {'default' if b is None else b}"
                         for k, (a, b) in e["settings"].items())
        m = e["mcnemar"]
        lines.append(f"| {what} (`{e['reference']}` -> `{e['changed']}`) | {e['variant']} | "
                     f"{', '.join(map(str, e['seeds']))} | {_pts(e['diff'])} | [{_pts(e['low'])}, {_pts(e['high'])}] | "
                     f"{', '.join(_pts(d) for d in e['per_seed'])} | {m['a_right_b_wrong']} / {m['a_wrong_b_right']} | "
                     f"{m['p_value']:.3g} |")
    return "\n".join(lines + [""])


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def _pts(x) -> str:
    return "n/a" if x is None else f"{100 * x:+.2f}"


def markdown(summaries: list[dict]) -> str:
    """The aggregate tables, one section per recipe."""
    lines = []
    for s in summaries:
        demo = s["settings"]["demo"]
        lines += [f"### Recipe `{s['fingerprint']}` ({s['settings']['task']}, max length {demo.get('max_length')}, "
                  f"teacher/student/QAT on {'/'.join(str(x) for x in s['settings']['data']['train_used'].values())} "
                  f"training snippets)", "",
                  f"{len(s['seeds'])} seed(s) ({', '.join(map(str, s['seeds']))}), "
                  f"commit(s) {', '.join(s['commits'])}, "
                  f"{s['test_n']} test snippets per seed; float teacher {_pct(s['teacher_mean'])} %"
                  + (f"; {s['superseded']} older record(s) of the same seeds left out." if s["superseded"] else "."),
                  "", "| variant | int8 test % (hwsim), mean | sd over seeds | min-max | float test %, mean | "
                  "hwsim == QAT |", "|---|---|---|---|---|---|"]
        for v, r in s["variants"].items():
            only = "" if r["seeds"] == s["seeds"] else f" (seed(s) {', '.join(map(str, r['seeds']))})"
            lines.append(f"| {v}{only} | {_pct(r['mean'])} | {_pct(r['sd'])} | {_pct(r['min'])}-{_pct(r['max'])} | "
                         f"{_pct(r['float_mean'])} | {'yes' if r['hwsim_equals_qat'] else 'NO'} |")
        lines += ["", "| comparison | n | difference (points) | 95 % interval | method | McNemar (a only / b only) "
                  "| p |", "|---|---|---|---|---|---|---|"]
        for c in s["comparisons"]:
            b = "float teacher" if c["b"] == "teacher" else f"int8 {c['b']}"
            ci = "n/a (one seed)" if c["low"] is None else f"[{_pts(c['low'])}, {_pts(c['high'])}]"
            m = c.get("mcnemar")
            mc = (f"{m['a_right_b_wrong']} / {m['a_wrong_b_right']} | {m['p_value']:.3g}") if m else "| "
            unit = "seed" if c["unit"] == "seeds" and c["n"] == 1 else c["unit"]
            lines.append(f"| int8 {c['a']} - {b} | {c['n']} {unit} | {_pts(c['diff'])} | {ci} | {c['method']} "
                         f"| {mc} |")
        lines.append("")
    return "\n".join(lines)
