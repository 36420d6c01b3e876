"""The scenario table: models x scenarios x sequence lengths, with the ratios of the registry's subjects to
their baselines (`models.variants`: inhibitor/dot).

`scenario_costs` loads each model once, takes its workload at every length (`hwsim.cost.model.workload_at`),
collects every stage mapping the table needs, runs the ones not cached yet on `jobs` processes
(ZigZag is pure Python: one stage per process at a time), then costs every cell from the cache.
"""
from __future__ import annotations

import csv
import io
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterable

from hwsim.cost.model import ARITH, CostResult, MappedCost, Tables, Workload, workload_at
from hwsim.cost.scenario import Scenario
from hwsim.cost.stages import GemmStage
from hwsim.cost.widths import WidthMismatch
from hwsim.cost.zigzag_map import MappedStage, cache_path, dump_accelerator, fit_words, map_stage
from models import variants
from models.errors import UserError

DEFAULT_LENGTHS = (16, 32, 64, 128, 256, 512)
CSV_COLUMNS = ("scenario", "variant", "model", "seq_len", "batch", "energy_uJ", "dram_uJ", "buffer_uJ",
               "register_uJ", "link_uJ", "arith_uJ", "leakage_uJ", "attention_uJ", "attention_share",
               "cycles", "latency_us", "utilisation", "area_mm2", "ideal_latency_us", "dram_weight_bytes",
               "dram_activation_bytes", "row_group", "spilled_tensors")
"""energy_uJ is per inference, leakage included; latency per batch; dram_*_bytes per inference."""


def load_tables(energy_table=None, technology=None) -> Tables:
    from hwsim.cost.tables import load_area_table, load_memory_table
    from hwsim.cost.energy import load_table

    energy = load_table(energy_table, technology)
    return Tables(energy, load_memory_table(None, energy.technology), load_area_table(None, energy.technology))


def counts_cost(work: Workload, scenario: Scenario, tables: Tables, model: str, variant: str, n: int) -> CostResult:
    """A `kind: counts` scenario: hwsim's own memory rules (`hwsim.sim.counting.count_graph`), energy only."""
    from hwsim.sim.actions import ActionKey
    from hwsim.sim.counting import count_graph
    from hwsim.cost.energy import price_by_component
    from hwsim.sim.hwconfig import load_hw

    energy: dict[str, float] = {}
    attention = 0.0
    sites = work.sites
    counts = count_graph(sites, load_hw(scenario.hw_config))
    for priced in price_by_component(counts, {s.name: s.op_type for s in sites}, tables.energy).values():
        for key, pj in priced.pj.items():
            action = ActionKey.parse(key)
            cls = ("dram" if action.level == "dram" else "buffer") if action.is_memory else ARITH + priced.component
            energy[cls] = energy.get(cls, 0.0) + pj
            attention += pj if priced.component == "attention" else 0.0
    return CostResult(scenario.name, model, variant, n, 1, energy, attention)


def _map_job(args) -> None:
    map_stage(*args)


def scenario_costs(models: dict[str, str], scenarios: list[Scenario], lengths: Iterable[int], tables: Tables,
                   jobs: int = 1, say: Callable[[str], None] = lambda _: None) -> list[CostResult]:
    """Every (scenario, model, length) cell; lengths beyond a model's positions are skipped."""
    from hwsim.sim.graph import load_plan

    t0 = time.perf_counter()
    schedules: dict = {}      # one schedule per (workload, batch, buffer) for every scenario that shares them
    sites: dict[tuple[str, int], Workload] = {}
    variants: dict[str, str] = {}
    for label, path in models.items():
        plan = load_plan(path)
        variants[label] = str(plan.meta.get("attention", label))
        for n in lengths:
            if n <= int(plan.meta.get("max_position", n)):
                sites[(label, n)] = workload_at(plan, n)
    requests: dict[tuple, tuple] = {}

    def collect(stage: GemmStage, acc: dict, mapping: str, pes: int) -> MappedStage:
        acc_text = dump_accelerator(fit_words(stage, acc))
        if not cache_path(stage, acc_text, mapping).exists():
            requests[(stage.shape_key(), acc_text, mapping)] = (stage, acc, mapping, pes)
        return MappedStage(1.0, 1.0, {}, {}, 1.0)

    mapped = [s for s in scenarios if s.kind == "mapped"]
    skipped: dict[tuple[str, str], str] = {}
    for s in mapped:
        collector = MappedCost(s, tables, collect, schedules)
        for (label, n), st in sites.items():
            try:
                collector.cost(st, label, variants[label], n)
            except WidthMismatch as err:   # a width-pinned array and a model of other widths: no cell
                if (s.name, label) not in skipped:
                    say(f"not costed: {label} on {s.name}: {err}")
                skipped[(s.name, label)] = str(err)
    todo = list(requests.values())
    say(f"scenario table: {len(sites)} model x length cells, {len(mapped)} mapped scenarios, {len(todo)} stage "
        f"mappings to search (the others are in the cache)")
    if jobs > 1 and len(todo) > 1:
        # spawn, not fork: a forked worker inherits the caller's onnxruntime sessions (the demo's
        # cross-check) and hangs for ever when its garbage collector destroys one (a condition
        # variable owned by a thread that does not exist in the child)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            for i, _ in enumerate(pool.map(_map_job, todo, chunksize=1), start=1):
                if i % 25 == 0 or i == len(todo):
                    say(f"  mapped {i}/{len(todo)} stages ({time.perf_counter() - t0:.0f} s)")
    else:
        for i, job in enumerate(todo, start=1):
            _map_job(job)
            if i % 25 == 0 or i == len(todo):
                say(f"  mapped {i}/{len(todo)} stages ({time.perf_counter() - t0:.0f} s)")
    out = []
    for s in scenarios:
        coster = MappedCost(s, tables, schedules=schedules) if s.kind == "mapped" else None
        for (label, n), st in sites.items():
            if (s.name, label) not in skipped:
                out.append(coster.cost(st, label, variants[label], n) if coster
                           else counts_cost(st, s, tables, label, variants[label], n))
    if not out:
        raise UserError(f"no model fits the widths of the scenarios asked for ({'; '.join(skipped.values())}); "
                        f"add a scenario whose PEs follow the model's widths, e.g. edge")
    say(f"scenario table done in {time.perf_counter() - t0:.1f} s")
    return out


def costs_at_mean_length(runs: list[tuple[str, str, float]], scenarios: list[Scenario], tables: Tables,
                         jobs: int = 1, say: Callable[[str], None] = lambda _: None) -> list[CostResult]:
    """Scenario costs of run reports: `runs` = (label, model path, mean sequence length), each costed
    at its mean length rounded to a whole token (one length per run: the mapped cost of every
    sample length would take one ZigZag search per length and stage)."""
    out: list[CostResult] = []
    for label, model, mean_len in runs:
        if not Path(model).is_file():
            from models.errors import UserError
            raise UserError(f"model {model} of run {label!r} not found; scenario costs need the exported .onnx")
        out += scenario_costs({label: model}, scenarios, (max(1, round(mean_len)),), tables, jobs=jobs, say=say)
    return out


def _uj(x: float | None) -> str:
    return "-" if x is None else f"{x / 1e6:,.2f}"


def ratios(results: list[CostResult]) -> dict[tuple[str, str], list[tuple[str, int, float, float]]]:
    """Per (subject, its baseline) of the registry (`models.variants.subjects()`: the inhibitor against
    dot), (scenario, length, subject/baseline attention energy, subject/baseline total energy) per cell
    that has both, in the order of the baseline's cells; pairs without a cell left out."""
    pairs = [(v, variants.get(v).compared_with) for v in variants.subjects()]
    by = {(r.scenario, r.variant, r.seq_len): r for r in results}
    out: dict[tuple[str, str], list[tuple[str, int, float, float]]] = {}
    for subject, base in pairs:
        for (scenario, variant, n), b in by.items():
            s = by.get((scenario, subject, n))
            if variant == base and s is not None:
                out.setdefault((subject, base), []).append(
                    (scenario, n, s.attention_pj / b.attention_pj, s.total_pj / b.total_pj))
    return out


def markdown(results: list[CostResult], scenarios: list[Scenario]) -> str:
    """The scenario table and the ratios, as Markdown (every figure a model estimate)."""
    lines = ["Energy per inference (leakage included), latency per batch (ideal: ZigZag's bound without stalls, "
             "fill or drain); **model estimates** from hwsim's exact op counts, ZigZag mappings of one tile at a "
             "time and the tables named by each scenario, not measurements.", "",
             "| scenario | variant | tokens | energy uJ | DRAM | buffer | register | link | arithmetic | leakage | "
             "attention uJ | attention share | latency us | ideal us | utilisation | area mm2 | row group | spilled |",
             "|" + "---|" * 18]
    for r in results:
        e = r.energy_pj
        cells = [r.scenario, r.variant, str(r.seq_len), _uj(r.total_pj), _uj(e.get("dram", 0)), _uj(e.get("buffer", 0)),
                 _uj(e.get("register", 0)), _uj(e.get("link", 0)), _uj(r.arithmetic_pj), _uj(e.get("leakage", 0)),
                 _uj(r.attention_pj), f"{r.attention_pj / r.total_pj:.1%}",
                 "-" if r.latency_us is None else f"{r.latency_us:,.1f}",
                 "-" if r.ideal_latency_us is None else f"{r.ideal_latency_us:,.1f}",
                 "-" if r.utilisation is None else f"{r.utilisation:.0%}",
                 "-" if r.area_total_mm2 is None else f"{r.area_total_mm2:.1f}",
                 "-" if r.latency_us is None else str(r.group), "-" if r.latency_us is None else str(len(r.spilled))]
        lines.append("| " + " | ".join(cells) + " |")
    for (subject, base), rows in ratios(results).items():
        pair = f"{subject}/{base}"
        lines += ["", f"| scenario | tokens | {pair} attention | {pair} whole model |", "|---|---|---|---|"]
        lines += [f"| {s} | {n} | {a:.3f} | {t:.4f} |" for s, n, a, t in rows]
    lines += ["", "Scenarios:"] + [f"- **{s.name}** ({Path(s.path).name}): {' '.join(s.source.split())}" for s in scenarios]
    return "\n".join(lines) + "\n"


def csv_text(results: list[CostResult]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in results:
        e = r.energy_pj
        w.writerow([r.scenario, r.variant, r.model, r.seq_len, r.batch] +
                   [f"{x / 1e6:.6g}" for x in (r.total_pj, e.get("dram", 0), e.get("buffer", 0), e.get("register", 0),
                                              e.get("link", 0), r.arithmetic_pj, e.get("leakage", 0), r.attention_pj)] +
                   [f"{r.attention_pj / r.total_pj:.6g}", "" if r.cycles is None else f"{r.cycles:.0f}",
                    "" if r.latency_us is None else f"{r.latency_us:.6g}",
                    "" if r.utilisation is None else f"{r.utilisation:.4f}",
                    "" if r.area_total_mm2 is None else f"{r.area_total_mm2:.4f}",
                    "" if r.ideal_latency_us is None else f"{r.ideal_latency_us:.6g}",
                    f"{r.dram_bytes.get('weights', 0):.0f}", f"{r.dram_bytes.get('activations', 0):.0f}",
                    r.group, " ".join(r.spilled)])
    return buf.getvalue()


def plot_energy_vs_length(results: list[CostResult], path: str | Path) -> None:
    """One panel per scenario: energy per inference against sequence length, one line per variant."""
    from hwsim.cost.plots import energy_vs_seq_len_panels

    panels: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for r in results:
        panels.setdefault(r.scenario, {}).setdefault(r.variant, []).append((r.seq_len, r.total_pj))
    energy_vs_seq_len_panels(panels, path)
