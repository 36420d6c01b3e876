"""The opening of the demo's summary: the answer per mapped scenario, and the data of its plots.

Everything here is computed from the scenario table (`hwsim.cost.table.scenario_costs`, one
`CostResult` per scenario x model x length) and the accuracy figures of the run; nothing is typed.
The answer is taken at two lengths: the RT test split's mean length (rounded, which the demo adds
to the table's lengths) and the longest length the table costs (512 tokens by default). Ratios and
differences are always against `BASE`; the other variants are whatever the table holds.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

from hwsim.cost.model import CostResult
from models import variants

BASE = variants.baseline()  # the registry's baseline (dot), what every other variant is compared with
DEFAULT_SCENARIO = "edge"
METRICS: dict[str, Callable[[CostResult], float | None]] = {
    "energy": lambda r: r.total_pj,
    "attention": lambda r: r.attention_pj,
    "latency": lambda r: r.latency_us,
    "area": lambda r: r.area_total_mm2,
}
"""What the answer compares against `BASE`: energy per inference (leakage included), attention's
energy (arithmetic + operand delivery), latency per batch, area."""
MOVEMENT = ("dram", "buffer", "register", "link")


def answer_lengths(mean_tokens: float, lengths: Iterable[int]) -> tuple[int, ...]:
    """The mean length rounded to a whole token and the longest costed length, ascending, no repeats.

    >>> answer_lengths(27.6, (16, 32, 512)), answer_lengths(16.2, (8, 16))
    ((28, 512), (16,))
    """
    return tuple(sorted({max(1, round(mean_tokens)), max(lengths)}))


def mapped_results(results: list[CostResult], mapped: Iterable[str]) -> list[CostResult]:
    """The results of the mapped scenarios named in `mapped`, `DEFAULT_SCENARIO` first, else in order."""
    names = set(mapped)
    keep = [r for r in results if r.scenario in names]
    return sorted(keep, key=lambda r: r.scenario != DEFAULT_SCENARIO)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def answer_rows(results: list[CostResult], lengths: Iterable[int]) -> list[dict]:
    """One row per (scenario, length in `lengths`) that has a `BASE` cell: BASE's energy and shares,
    and per other variant its ratio to BASE for every entry of `METRICS` (None where undefined)."""
    cells = {(r.scenario, r.model, r.seq_len): r for r in results}
    wanted = set(lengths)
    rows = []
    for (scenario, model, n), base in cells.items():
        if model != BASE or n not in wanted:
            continue
        others = {m: r for (s, m, k), r in cells.items() if s == scenario and k == n and m != BASE}
        total = base.total_pj
        row = {"scenario": scenario, "seq_len": n, "base_energy_uJ": total / 1e6,
               "base_attention_share": base.attention_pj / total,
               "base_dram_share": base.energy_pj.get("dram", 0.0) / total,
               "base_leakage_share": base.energy_pj.get("leakage", 0.0) / total}
        for metric, get in METRICS.items():
            row[metric] = {m: _ratio(get(r), get(base)) for m, r in others.items()}
        rows.append(row)
    return rows


def accuracy_figures(accuracy: Mapping[str, float | None], mcnemar: Mapping[str, dict | None]) -> dict:
    """Per variant: its accuracy, and for the others the difference to BASE in points and McNemar's test."""
    out = {}
    for v, acc in accuracy.items():
        out[v] = {"accuracy": acc}
        if v != BASE and acc is not None and accuracy.get(BASE) is not None:
            out[v]["points_vs_base"] = 100 * (acc - accuracy[BASE])
            out[v]["mcnemar"] = mcnemar.get(v)
    return out


# ---------------------------------------------------------------- Markdown

def _pct(r: float | None) -> str:
    """A ratio to BASE as a signed percentage difference, two decimals under 1 %.

    >>> _pct(0.9995), _pct(1.072), _pct(None)
    ('-0.05%', '+7.2%', '-')
    """
    if r is None:
        return "-"
    d = 100 * (r - 1)
    return f"{d:+.2f}%" if abs(d) < 1 else f"{d:+.1f}%"


def _by_scenario(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["scenario"], []).append(row)
    return {s: sorted(rs, key=lambda r: r["seq_len"]) for s, rs in out.items()}


def answer_table(rows: list[dict]) -> list[str]:
    """One line per scenario; each cell holds its value at every answer length, ' / '-separated."""
    lengths = sorted({r["seq_len"] for r in rows})
    others = list(rows[0]["energy"])
    head = [f"scenario ({' / '.join(map(str, lengths))} tokens)", f"{BASE} uJ / inference",
            *[f"{v} {m}" for m in ("energy", "attention", "latency") for v in others],
            *[f"{v} area" for v in others]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario, rs in _by_scenario(rows).items():
        cells = [scenario, " / ".join(f"{r['base_energy_uJ']:,.0f}" for r in rs)]
        cells += [" / ".join(_pct(r[m][v]) for r in rs) for m in ("energy", "attention", "latency") for v in others]
        cells += [_pct(rs[0]["area"][v]) for v in others]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _span(values: list[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return format(lo, fmt) if format(lo, fmt) == format(hi, fmt) else f"{format(lo, fmt)} to {format(hi, fmt)}"


def _accuracy_sentence(acc: dict, bits: int, samples: int) -> str:
    parts = []
    for v, a in acc.items():
        if a["accuracy"] is None:
            continue
        text = f"{v} {100 * a['accuracy']:.2f} %"
        if "points_vs_base" in a:
            m = a.get("mcnemar")
            test = "" if not m else (f", McNemar p = {m['p_value']:.2g}, "
                                     f"{'significant' if m['p_value'] < 0.05 else 'not significant'} at 5 %")
            text += f" ({a['points_vs_base']:+.2f} points{test})"
        parts.append(text)
    return f"**Accuracy** (int{bits}, RT test split, {samples} snippets, hwsim's predictions): {'; '.join(parts)}."


def findings(rows: list[dict], acc: dict, bits: int, samples: int, params: Mapping[str, int]) -> list[str]:
    """One sentence per key finding, each computed from `rows` (`answer_rows`), `acc` (`accuracy_figures`)
    and the models' parameter counts."""
    lengths = sorted({r["seq_len"] for r in rows})
    others = list(rows[0]["energy"])
    at = {n: [r for r in rows if r["seq_len"] == n] for n in lengths}
    short = lengths[0]
    n_scen = len({r["scenario"] for r in rows})

    def per_length(values: Callable[[dict], float], fmt: str, unit: str) -> str:
        return " and ".join(f"{_span([values(r) for r in at[n]], fmt)}{unit} at {n} tokens" for n in lengths)

    energy = "; ".join(f"{v} {_span([100 * (r['energy'][v] - 1) for r in rows], '+.2f')} %" for v in others)
    attention = "; ".join(f"{v} {per_length(lambda r: r['attention'][v], '.2f', 'x')}" for v in others)
    share = per_length(lambda r: 100 * r["base_attention_share"], ".1f", " %")
    first = at[short][0]
    cost = "; ".join(f"{v} area {_span([100 * (r['area'][v] - 1) for r in rows], '+.1f')} %, latency "
                     f"{_span([100 * (r['latency'][v] - 1) for r in rows], '+.2f')} %" for v in others)
    return [
        _accuracy_sentence(acc, bits, samples),
        f"**Whole model**: energy per inference relative to {BASE} on the {n_scen} mapped scenarios at "
        f"{' and '.join(map(str, lengths))} tokens: {energy} (parameters: "
        + "; ".join(f"{v} {100 * (params[v] / params[BASE] - 1):+.1f} %" for v in others) + "). "
        f"**Attention** (its arithmetic and operand delivery) relative to {BASE}'s: {attention}; attention's "
        f"share of {BASE}'s energy: {share}.",
        f"**Where it goes and what it costs**: on `{first['scenario']}` at {short} tokens DRAM is "
        f"{100 * first['base_dram_share']:.0f} % and leakage {100 * first['base_leakage_share']:.0f} % of "
        f"{BASE}'s energy; relative to {BASE} on the mapped scenarios: {cost}.",
    ]


def answer_markdown(rows: list[dict], acc: dict, bits: int, samples: int, params: Mapping[str, int]) -> str:
    """The summary's opening section: a heading, the table, the findings (under 15 lines)."""
    lines = [f"# The answer: relative to {BASE} attention, W{bits}A{bits} models on accelerator scenarios "
             "(model estimates; energy includes leakage)", "", *answer_table(rows), ""]
    lines += [f"- {s}" for s in findings(rows, acc, bits, samples, params)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- plot data

def where_split(r: CostResult) -> dict[str, float]:
    """Energy per inference (pJ) by where it is spent; the parts add up to `r.total_pj`."""
    e = r.energy_pj
    return {"DRAM": e.get("dram", 0.0), "buffer": e.get("buffer", 0.0),
            "registers + links": e.get("register", 0.0) + e.get("link", 0.0),
            "arithmetic": r.arithmetic_pj, "leakage": e.get("leakage", 0.0)}


def component_split(r: CostResult) -> dict[str, float]:
    """Energy per inference (pJ) by component: attention whole (arithmetic + operand delivery), the
    other components' arithmetic, the other components' data movement, leakage; adds up to `r.total_pj`."""
    e = r.energy_pj
    arith = r.arithmetic_by_component
    attention_movement = r.attention_pj - arith.get("attention", 0.0)
    out = {"attention (all)": r.attention_pj}
    out.update({f"{c} arithmetic": v for c, v in arith.items() if c != "attention"})
    out["data movement (rest)"] = sum(e.get(k, 0.0) for k in MOVEMENT) - attention_movement
    out["leakage"] = e.get("leakage", 0.0)
    return out


def split_panels(results: list[CostResult], scenario: str, lengths: Iterable[int]) -> dict[str, dict]:
    """Stacked-bar panels for `scenario`: per length, by where and by component; {title: {model: {part: pJ}}}."""
    panels: dict[str, dict] = {}
    for n in lengths:
        cells = [r for r in results if r.scenario == scenario and r.seq_len == n]
        if cells:
            panels[f"{scenario}, {n} tokens: where it goes"] = {r.model: where_split(r) for r in cells}
            panels[f"{scenario}, {n} tokens: by component"] = {r.model: component_split(r) for r in cells}
    return panels


def accuracy_energy_points(results: list[CostResult], accuracy: Mapping[str, float | None],
                           n: int) -> list[tuple[str, str, float, float]]:
    """(model, scenario, energy pJ per inference at `n` tokens, accuracy) per cell with an accuracy."""
    return [(r.model, r.scenario, r.total_pj, accuracy[r.model]) for r in results
            if r.seq_len == n and accuracy.get(r.model) is not None]


def attention_share_series(results: list[CostResult]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{scenario: {model: [(tokens, attention's share of the energy per inference)]}}."""
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for r in results:
        out.setdefault(r.scenario, {}).setdefault(r.model, []).append((r.seq_len, r.attention_pj / r.total_pj))
    return out
