"""`hwsim demo`: the end-to-end energy study on real weights and real text.

    hwsim demo [--out DIR] [--full] [--force] [--results DIR | --no-record]

The demo is one seed of `hwsim study` at its cut, followed by the energy steps. Steps 1-5 are the
study's stages (`hwsim.app.study`), each cached in DIR under the fingerprint of its settings and of the
stages it reads (`hwsim.app.stages`): a changed setting reruns what it changes, --force reruns them all;
a killed run resumes where it stopped when run again.
1. fine-tune the float MiniLM teacher on the RT snippets (dot attention), and keep its test predictions;
2. distil float students from the teacher (dot, inhibitor, symmetric; ReLU FFN; the inhibitor
   calibrated, inhibitor and symmetric fitted layer by layer to the teacher's attention contexts);
3. quantization-aware-train W8A8 students of all three variants from them, distilled from the teacher;
4. export each to integer-only ONNX;
5. simulate the whole RT test split in hwsim (onnxruntime cross-check on the first samples);
6. count every variant at sequence lengths 16..512 on random token ids;
7. price the counts (Horowitz 45 nm table: the op-count-only view, `today`'s rules);
8. cost every variant on every packaged accelerator scenario at the sweep lengths and the test split's
   mean length (ZigZag mappings, `hwsim cost`);
9. write report.json, report.csv, scenarios.csv, summary.md (the answer first: `hwsim.app.demo_answer`)
   and its plots (`hwsim.app.demo_report`);
10. append a record of the run to the results ledger (`results/` or --results DIR, `hwsim.app.ledger`;
    --no-record skips it); `hwsim results` aggregates the records over seeds.

The default is cut to finish within about 20 minutes on 2 CPU cores (`StudyConfig.cut`): training
uses the first `train_limit` training snippets at `max_length` tokens (the test split is always
whole); `--full` runs the complete recipe (`StudyConfig()`: every training snippet, more epochs, 64
tokens), whose record pools with `hwsim study`'s.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from hwsim.app.study import StudyConfig
from models import variants

__all__ = ["DemoConfig", "run_demo"]


@dataclass(frozen=True)
class DemoConfig:
    out: str = "demo_out"
    force: bool = False
    recipe: StudyConfig = field(default_factory=StudyConfig.cut)
    ort_check: int = 16                 # first N test samples also run in onnxruntime
    sweep_lengths: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    seed: int = 0
    save_every: int = 100               # training steps between training checkpoints (resume after a kill)

    @classmethod
    def full(cls, **changes) -> "DemoConfig":
        return replace(cls(recipe=StudyConfig(), ort_check=128), **changes)

    @classmethod
    def from_flat(cls, config: dict) -> "DemoConfig":
        """The inverse of `config_dict` (report.json's "config")."""
        recipe = StudyConfig(**{k: v for k, v in config.items() if k in StudyConfig.__dataclass_fields__})
        own = {k: v for k, v in config.items() if k in cls.__dataclass_fields__}
        return cls(**{**own, "recipe": recipe, "sweep_lengths": tuple(config["sweep_lengths"])})


def config_dict(cfg: DemoConfig) -> dict:
    """The demo's settings as one flat dict (report.json's "config"; the recipe's fields but the task, and
    those added later only when set, as the ledger hashes them: `models.settings.hashed`)."""
    from models.settings import hashed
    flat = {k: v for k, v in asdict(cfg).items() if k not in ("recipe", "save_every")}
    return {**flat, **{k: v for k, v in hashed(cfg.recipe).items() if k != "task"}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo_out", help="output folder")
    parser.add_argument("--full", action="store_true", help="the complete recipe instead of the 20-minute cut")
    parser.add_argument("--force", action="store_true", help="redo every step even when cached")
    parser.add_argument("--results", default="results", help="folder the run's ledger record is written to")
    parser.add_argument("--no-record", action="store_true", help="write no ledger record")


def run(args: argparse.Namespace) -> int:
    cfg = DemoConfig.full(out=args.out, force=args.force) if args.full else DemoConfig(out=args.out, force=args.force)
    run_demo(cfg, None if args.no_record else args.results)
    return 0


def _say(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- energy

def sweep(cfg: DemoConfig, models: dict[str, Path], table) -> dict[str, list[tuple[int, float, float]]]:
    """Energy per inference (total, attention arithmetic) at each sweep length, random token ids."""
    import numpy as np

    from hwsim.cost.energy import price_by_component
    from hwsim.sim.executor import execute
    from hwsim.sim.graph import load_plan

    rng = np.random.default_rng(cfg.seed)
    series: dict[str, list[tuple[int, float, float]]] = {}
    for v, model in models.items():
        plan = load_plan(model)
        vocab, max_pos = int(plan.meta["vocab_size"]), int(plan.meta["max_position"])
        points = []
        for n in cfg.sweep_lengths:
            if n > max_pos:
                continue
            ids = rng.integers(1000, vocab, size=(1, n), dtype=np.int64)
            res = execute(plan, ids, np.ones_like(ids), overflow="saturate", track_widths=False)
            total = attention = 0.0
            for energy in price_by_component(res.counts, {p.name: p.op_type for p in plan.nodes}, table).values():
                total += energy.total_pj
                if energy.component == "attention":
                    attention += energy.arithmetic_pj
            points.append((n, total, attention))
        series[v] = points
        _say(f"sweep {v}: " + ", ".join(f"{n}: {t / 1e3:.0f} nJ" for n, t, _ in points))
    return series


def scenario_lengths(cfg: DemoConfig, mean_tokens: float) -> tuple[int, ...]:
    """The sweep lengths plus the lengths the summary's answer is given at (the test split's mean length)."""
    from hwsim.app.demo_answer import answer_lengths

    return tuple(sorted({*cfg.sweep_lengths, *answer_lengths(mean_tokens, cfg.sweep_lengths)}))


def scenario_table(cfg: DemoConfig, models: dict[str, Path], reports: dict[str, Path]) -> tuple[list, list]:
    """Every packaged accelerator scenario at the sweep lengths and the test split's mean length
    (`hwsim cost`), all cores."""
    import os

    from hwsim.cost.scenario import load_scenario, packaged_names
    from hwsim.cost.table import load_tables, scenario_costs
    from hwsim.app.demo_report import split_mean_length

    scenarios = [load_scenario(n) for n in packaged_names()]
    lengths = scenario_lengths(cfg, split_mean_length(reports))
    results = scenario_costs({v: str(p) for v, p in models.items()}, scenarios, lengths, load_tables(),
                             jobs=os.cpu_count() or 1, say=_say)
    return results, scenarios


# ---------------------------------------------------------------- the demo

def run_demo(cfg: DemoConfig, results: str | Path | None = None) -> dict:
    """One seed of the study at `cfg.recipe`, then the energy steps and the report; with `results`, a
    ledger record of the finished run is written there (`hwsim.app.ledger`)."""
    from hwsim.app.demo_report import write_outputs
    from hwsim.cost.energy import load_table
    from hwsim.app.stages import Progress
    from hwsim.app.study import StudyRun, run_seed, stage_names

    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _say(f"writing to {out.resolve()} ({'full recipe' if cfg.recipe == StudyConfig() else 'default 20-minute cut'})")
    if results is not None:
        from hwsim.app.ledger import git_commit, replay_warning
        warning = replay_warning(git_commit())
        if warning:
            _say(f"warning: {warning}")
    run = StudyRun(out=str(out), seeds=(cfg.seed,), variants=variants.names(), save_every=cfg.save_every,
                   ort_check=cfg.ort_check, force=cfg.force)
    stages = stage_names(cfg.recipe, variants.names())
    seed = run_seed(cfg.recipe, cfg.seed, out, run, Progress([cfg.seed], stages, _say))
    stages = dict(seed.stage_s)
    metrics = {"float-dot": seed.metrics["teacher"], **seed.metrics}  # the teacher's without a dot student
    t1 = time.perf_counter()

    def lap(stage: str) -> None:  # the seconds since the previous energy step ended
        nonlocal t1
        stages[stage], t1 = round(time.perf_counter() - t1, 1), time.perf_counter()

    table = load_table()
    series = sweep(cfg, seed.models, table)
    lap("sweep")
    costs = scenario_table(cfg, seed.models, seed.reports)
    lap("scenarios")
    train_s = round(sum(s or 0.0 for n, s in seed.stage_s.items() if n in seed.metrics), 1)
    result = write_outputs(cfg, metrics, seed.models, seed.reports, series, table,
                           timings={"train_s": train_s, "total_s": round(time.perf_counter() - t0, 1)},
                           costs=costs)
    lap("report")
    total = round(time.perf_counter() - t0, 1)
    _say(f"done in {total:.0f} s: {out / 'summary.md'}")
    if results is not None:
        from hwsim.app.ledger import seed_record, write_record
        record = seed_record("demo", cfg.recipe, cfg.seed, seed.metrics, seed.reports, seed.teacher_predictions,
                             {**stages, "total": total})
        path = write_record(record, Path(results))
        _say(f"result record: {path}")
    return result
