"""`hwsim demo`: the end-to-end energy study on real weights and real text.

    hwsim demo [--out DIR] [--full] [--force] [--results DIR | --no-record]

Steps (each cached in DIR and skipped when its output exists, unless --force):
1. fine-tune the float MiniLM teacher on the RT snippets (dot attention);
2. distil float students from the teacher (dot, inhibitor, symmetric; ReLU FFN; the inhibitor
   calibrated, inhibitor and symmetric fitted layer by layer to the teacher's attention contexts);
3. quantization-aware-train W8A8 students of all three variants from them, distilled from the teacher;
4. export each to integer-only ONNX;
5. simulate the whole RT test split in hwsim (onnxruntime cross-check on the first samples);
6. count every variant at sequence lengths 16..512 on random token ids;
7. price the counts (Horowitz 45 nm table: the op-count-only view, `today`'s rules);
8. cost every variant on every packaged accelerator scenario at the sweep lengths and the test split's
   mean length (ZigZag mappings, `hwsim cost`);
9. write report.json, report.csv, scenarios.csv, summary.md (the answer first: `hwsim.demo_answer`)
   and its plots (`hwsim.demo_report`);
10. append a record of the run to the results ledger (`results/` or --results DIR, `hwsim.ledger`;
    --no-record skips it); `hwsim results` aggregates the records over seeds.

The default is cut to finish within about 20 minutes on 2 CPU cores: training uses the first
`train_limit` training snippets at `max_length` tokens (the test split is always whole); `--full`
runs the complete recipe (every training snippet, more epochs, 64 tokens).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

VARIANTS = ("dot", "inhibitor", "symmetric")


@dataclass(frozen=True)
class DemoConfig:
    out: str = "demo_out"
    force: bool = False
    bits: int = 8
    max_length: int = 48
    teacher_epochs: int = 1
    teacher_train_limit: int | None = 3000
    student_epochs: int = 1
    student_batch_size: int = 16        # twice the updates of batch 32 at the same compute (QUANT.md ablation)
    student_lr: float = 2e-4
    student_train_limit: int | None = 2000
    qat_epochs: int = 1
    qat_train_limit: int | None = 1000
    qat_batch_size: int = 16
    # the student recipe (docs/QUANT.md "Student recipe"): every float student is distilled from the
    # teacher (KL + CE + hidden + contexts) with the ReLU it is quantized with; inhibitor and symmetric
    # students are first fitted layer by layer over the shuffled training cut
    layer_init_steps: int = -1          # -1: one pass over the students' training cut
    transfer_copies: int = 0            # teacher-labelled augmented copies per snippet
    transfer_plots: bool = False        # plus the plot chunks of training movies
    dot_student: bool = True            # int8 dot from a float ReLU dot student (else from the teacher)
    ort_check: int = 16                 # first N test samples also run in onnxruntime
    sweep_lengths: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    seed: int = 0
    teacher: str = "minilm"             # checkpoint the teacher is fine-tuned from
    limit: int | None = None            # first N examples of every split (tests only)

    @classmethod
    def full(cls, **changes) -> "DemoConfig":
        return replace(cls(max_length=64, teacher_epochs=2, teacher_train_limit=None, student_epochs=2,
                           student_train_limit=None, qat_epochs=1, qat_train_limit=None, ort_check=128),
                       **changes)


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


# ---------------------------------------------------------------- training and export

def _train(cfg: DemoConfig, out: Path, **kw) -> dict:
    from quant.train.loop import TrainConfig, train
    metrics = out / "metrics.json"
    if metrics.is_file() and not cfg.force:
        _say(f"cached: {out}")
        return json.loads(metrics.read_text())
    _say(f"training {out.name} ...")
    return train(TrainConfig(out=str(out), task="rt", max_length=cfg.max_length, seed=cfg.seed, limit=cfg.limit,
                             **kw))


def train_all(cfg: DemoConfig) -> dict[str, dict]:
    """Teacher, float students, QAT students; returns {run name: metrics}."""
    from quant.train.distill import DistillConfig
    runs = Path(cfg.out) / "runs"
    teacher = runs / "teacher"
    metrics = {"teacher": _train(cfg, teacher, attention="dot", teacher=cfg.teacher, float_model=True,
                                 distill=DistillConfig(mode="none"), epochs=cfg.teacher_epochs,
                                 train_limit=cfg.teacher_train_limit)}
    metrics["float-dot"] = metrics["teacher"]  # replaced by the float dot student when there is one
    students = VARIANTS if cfg.dot_student else VARIANTS[1:]
    for v in students:
        metrics[f"float-{v}"] = _train(cfg, runs / f"float-{v}", attention=v, teacher=str(teacher),
                                       float_model=True, distill=DistillConfig(mode="task"),
                                       layer_init_steps=0 if v == "dot" else cfg.layer_init_steps,
                                       transfer_copies=cfg.transfer_copies, transfer_plots=cfg.transfer_plots,
                                       epochs=cfg.student_epochs, train_limit=cfg.student_train_limit,
                                       batch_size=cfg.student_batch_size, lr=cfg.student_lr)
    for v in VARIANTS:
        init = str(runs / f"float-{v}") if v in students else None
        metrics[f"int{cfg.bits}-{v}"] = _train(cfg, runs / f"int{cfg.bits}-{v}", attention=v,
                                               teacher=str(teacher), bits=cfg.bits,
                                               distill=DistillConfig(mode="task"), init_student=init,
                                               epochs=cfg.qat_epochs, train_limit=cfg.qat_train_limit,
                                               batch_size=cfg.qat_batch_size)
    return metrics


def export_all(cfg: DemoConfig) -> dict[str, Path]:
    from export.pipeline import export_run
    paths = {}
    for v in VARIANTS:
        run_dir = Path(cfg.out) / "runs" / f"int{cfg.bits}-{v}"
        path = Path(cfg.out) / "models" / f"{v}-w{cfg.bits}.onnx"
        if not path.is_file() or cfg.force:
            _say(f"exporting {run_dir} -> {path}")
            export_run(run_dir, path)
        paths[v] = path
    return paths


# ---------------------------------------------------------------- simulation

def simulate_all(cfg: DemoConfig, models: dict[str, Path]) -> dict[str, Path]:
    """Simulate the RT test split for each variant; one run report per variant."""
    from hwsim.graph import load_plan
    from hwsim.texts import resolve_tokenizer, simulate_texts
    from models.files import write_text_atomic
    from quant.data.tasks import load_split

    split = load_split("rt", "test", limit=cfg.limit)
    reports = {}
    for v, model in models.items():
        path = Path(cfg.out) / "reports" / f"{v}.json"
        if not path.is_file() or cfg.force:
            _say(f"simulating {len(split)} RT test snippets with {model.name} (onnxruntime check on {cfg.ort_check})")
            plan = load_plan(model)
            tok = resolve_tokenizer(None, plan.meta)
            texts = [t[0] for t in split.texts]
            # truncated like training, so hwsim's accuracy is comparable with the QAT evaluation's
            report = simulate_texts(plan, model, texts, list(split.labels), tok, cfg.ort_check,
                                    max_length=cfg.max_length)
            write_text_atomic(path, json.dumps(report, indent=1))
        reports[v] = path
    return reports


def sweep(cfg: DemoConfig, models: dict[str, Path], table) -> dict[str, list[tuple[int, float, float]]]:
    """Energy per inference (total, attention arithmetic) at each sweep length, random token ids."""
    import numpy as np

    from hwsim.energy import price_by_component
    from hwsim.executor import execute
    from hwsim.graph import load_plan

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
    from hwsim.demo_answer import answer_lengths

    return tuple(sorted({*cfg.sweep_lengths, *answer_lengths(mean_tokens, cfg.sweep_lengths)}))


def scenario_table(cfg: DemoConfig, models: dict[str, Path], reports: dict[str, Path]) -> tuple[list, list]:
    """Every packaged accelerator scenario at the sweep lengths and the test split's mean length
    (`hwsim cost`), all cores."""
    import os

    from hwsim.cost.scenario import load_scenario, packaged_names
    from hwsim.cost.table import load_tables, scenario_costs
    from hwsim.demo_report import split_mean_length

    scenarios = [load_scenario(n) for n in packaged_names()]
    lengths = scenario_lengths(cfg, split_mean_length(reports))
    results = scenario_costs({v: str(p) for v, p in models.items()}, scenarios, lengths, load_tables(),
                             jobs=os.cpu_count() or 1, say=_say)
    return results, scenarios


# ---------------------------------------------------------------- the study

def run_demo(cfg: DemoConfig, results: str | Path | None = None) -> dict:
    """The whole study; with `results`, a ledger record of the finished run is written there
    (`hwsim.ledger`)."""
    from hwsim.demo_report import write_outputs
    from hwsim.energy import load_table

    t0 = time.perf_counter()
    stages: dict[str, float] = {}

    def lap(stage: str) -> None:  # the seconds since the previous stage ended
        stages[stage] = round(time.perf_counter() - t0 - sum(stages.values()), 1)

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    _say(f"writing to {out.resolve()} ({'full recipe' if cfg.max_length == 64 and cfg.teacher_train_limit is None else 'default 20-minute cut'})")
    metrics = train_all(cfg)
    lap("train")
    models = export_all(cfg)
    lap("export")
    reports = simulate_all(cfg, models)
    lap("simulate")
    table = load_table()
    series = sweep(cfg, models, table)
    lap("sweep")
    costs = scenario_table(cfg, models, reports)
    lap("scenarios")
    result = write_outputs(cfg, metrics, models, reports, series, table,
                           timings={"train_s": stages["train"], "total_s": round(time.perf_counter() - t0, 1)},
                           costs=costs)
    lap("report")
    total = round(time.perf_counter() - t0, 1)
    _say(f"done in {total:.0f} s: {out / 'summary.md'}")
    if results is not None:
        from hwsim.ledger import demo_record, write_record
        path = write_record(demo_record(cfg, out, {**stages, "total": total}), Path(results))
        _say(f"result record: {path}")
    return result


def config_dict(cfg: DemoConfig) -> dict:
    return asdict(cfg)
