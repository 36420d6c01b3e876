"""`hwsim run MODEL.onnx`: simulate samples bit for bit, one at a time at their own length, and
write a report of accuracy, per-node action counts (summed over samples) and tensor widths.

    hwsim run model.onnx --task rt --split test --limit 200 --check-ort --report run.json
    hwsim run model.onnx --text "a gripping, funny film" --report one.json
    hwsim run model.onnx --task mnli --split validation_matched --jobs 8 --report mnli.json
    hwsim run model.onnx --task mnli --split validation_matched --scheduler tcp://head:8786 --report mnli.json

Samples are split over `--jobs` processes (default: all cores), or over a Dask cluster (`--workers N`
local, `--scheduler ADDRESS` existing) in shard files that a rerun after a kill reuses; the report is
the same, byte for byte apart from its "timing" entry, however the work was split.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

from models.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="integer-only ONNX model written by `hwsim export`")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--task", help="task whose labelled split to run (e.g. rt)")
    src.add_argument("--text", action="append", help="a text to classify (repeatable)")
    parser.add_argument("--split", default="test", help="split of --task")
    parser.add_argument("--limit", type=int, default=None, help="first N samples only")
    parser.add_argument("--data-dir", default=None, help="local data folder of the task")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer folder or teacher name (default: the model's hwsim.meta 'tokenizer', else minilm)")
    parser.add_argument("--max-length", type=int, default=None, metavar="N",
                        help="truncate texts to N tokens (default: the model's hwsim.meta 'max_length', the "
                             "truncation it was trained and evaluated with; else its position table)")
    parser.add_argument("--check-ort", nargs="?", type=int, const=-1, default=0, metavar="N",
                        help="also run onnxruntime and require equal logits: on every sample, or on the first N")
    parser.add_argument("--hw", default=None, help="hardware config JSON for counting (default: packaged)")
    from hwsim.app.cost_cli import add_scenario_argument
    add_scenario_argument(parser, default_all=False)
    parser.add_argument("--overflow", choices=("error", "saturate", "wrap"), default="error",
                        help="what a value outside its declared width does")
    parser.add_argument("--report", required=True, help="output JSON report")
    parser.add_argument("--jobs", type=int, default=None,
                        help="worker processes on this machine (default: all cores; 1 = this process only; "
                             "sets under 16 samples always run in this process)")
    parser.add_argument("--workers", type=int, default=None,
                        help="run on a new local Dask cluster of N worker processes, in resumable shards")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run on the Dask cluster at ADDRESS (e.g. tcp://host:8786), in resumable shards")
    parser.add_argument("--shard-dir", default=None,
                        help="with --workers/--scheduler: folder of finished shards, reused by a rerun "
                             "(default: REPORT without .json + '.shards')")
    parser.add_argument("--shard-size", type=int, default=None, help="with --workers/--scheduler: samples per shard (default 64)")


def needs_hub(args: argparse.Namespace) -> bool:
    """Whether this command would read its data from the Hugging Face hub."""
    from quant.data.tasks import needs_hub as task_needs_hub
    return task_needs_hub(args.task, args.data_dir)


def _engine(args: argparse.Namespace) -> tuple[int, int | None, str | None]:
    """(jobs, Dask workers, Dask scheduler) of the command line, checked."""
    from hwsim.app.parallel import default_jobs

    if sum(x is not None for x in (args.jobs, args.workers, args.scheduler)) > 1:
        raise UserError("give at most one of --jobs, --workers and --scheduler")
    for name in ("jobs", "workers", "shard_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} {value} must be at least 1")
    return args.jobs or default_jobs(), args.workers, args.scheduler


def _simulate(args: argparse.Namespace, plan, ids, labels) -> tuple[dict, str]:
    """The run report of `ids` by the engine the command line asks for, and the engine's name."""
    from hwsim.app.parallel import MIN_POOL_SAMPLES, RunSpec, simulate_pool

    jobs, workers, scheduler = _engine(args)
    spec = RunSpec(args.model, args.hw, args.overflow, args.check_ort)
    if workers is None and scheduler is None:
        used = 1 if len(ids) < MIN_POOL_SAMPLES else min(jobs, len(ids))
        return simulate_pool(plan, spec, ids, labels, jobs), f"{used} processes"
    from hwsim.app.dask_run import dask_client, simulate_dask
    shard_dir = args.shard_dir or str(Path(args.report).with_suffix("")) + ".shards"
    with dask_client(workers, scheduler) as client:
        report = simulate_dask(plan, spec, ids, labels, client, shard_dir, args.shard_size or 64)
    return report, f"dask ({scheduler or f'{workers} local workers'}), shards in {shard_dir}"


def label_names(meta: dict) -> tuple[tuple[str, ...] | None, str]:
    """(class names, where they came from) of a model: its task's names when hwsim.meta records the
    task, else None and a note that class indices are shown."""
    from quant.data.tasks import get_task

    task = meta.get("task")
    if task is None:
        return None, "class indices: the model records no task (export a `hwsim train` run to record it)"
    try:
        names = get_task(task).label_names
    except UserError:
        return None, f"class indices: the model's task {task!r} is not a known task"
    if names is None or len(names) != meta.get("num_labels"):
        return None, f"class indices: task {task!r} names no {meta.get('num_labels')} labels"
    return names, f"labels of task {task}"


def text_lines(texts: list[str], report: dict) -> list[str]:
    """One line per text: the predicted label (name, else class index) and the logits, as reals."""
    meta = report["meta"]
    scale = 2.0 ** -int(meta.get("logits_exp", 0))
    names, source = label_names(meta)
    lines = [f"predictions ({source}):"]
    for text, pred, logits in zip(texts, report["predictions"], report["logits"]):
        values = [v * scale for v in logits]
        if pred is None:  # one output: a regression score
            lines.append(f"  {text!r}: score {values[0]:.4f}")
            continue
        label = names[pred] if names else str(pred)
        keys = names or [str(i) for i in range(len(values))]
        shown = ", ".join(f"{k} {v:.4f}" for k, v in zip(keys, values))
        lines.append(f"  {text!r}: {label} (logits {shown})")
    return lines


def run(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from hwsim.sim.graph import load_plan
    from hwsim.sim.hwconfig import load_hw
    from hwsim.app.texts import encode_texts, max_tokens, resolve_tokenizer
    from models.files import atomic_path

    if not Path(args.model).is_file():
        raise UserError(f"model {args.model} not found; pass the .onnx file written by `hwsim export`")
    plan = load_plan(args.model, load_hw(args.hw))
    scenarios = None
    if args.scenario:
        from hwsim.app.cost_cli import load_scenarios
        scenarios = load_scenarios(args.scenario)      # a bad scenario fails before any simulation
    if args.task:
        from quant.data.tasks import load_split
        split = load_split(args.task, args.split, data_dir=args.data_dir, limit=args.limit)
        texts, labels = list(split.texts), list(split.labels)
    else:
        texts, labels = list(args.text), None
    if not texts:
        raise UserError("no samples to run; check --task/--split/--limit")
    positions = int(plan.meta.get("max_position", 512))
    if args.max_length is not None and not 1 <= args.max_length <= positions:
        raise UserError(f"--max-length {args.max_length} is outside 1..{positions} (the model's position table)")
    ids = encode_texts(texts, resolve_tokenizer(args.tokenizer, plan.meta), max_tokens(plan.meta, args.max_length))
    t0 = time.perf_counter()
    report, engine = _simulate(args, plan, ids, labels)
    wall = time.perf_counter() - t0
    cost_text = None
    if scenarios:
        from hwsim.cost.table import costs_at_mean_length, csv_text, load_tables, markdown
        results = costs_at_mean_length([(str(plan.meta.get("attention", "model")), args.model,
                                         float(np.mean(report["seq_lens"])))], scenarios, load_tables())
        report["scenarios"] = list(csv.DictReader(io.StringIO(csv_text(results))))
        cost_text = markdown(results, scenarios)
    names, _ = label_names(plan.meta)
    if names:
        report["label_names"] = list(names)
    report["timing"] = {"engine": engine, "wall_s": round(wall, 3), "samples_per_s": round(len(ids) / wall, 3)}
    with atomic_path(args.report) as tmp:
        tmp.write_text(json.dumps(report, indent=1), encoding="utf-8")
    widths, accuracy = report["widths"], report["accuracy"]
    acc = "n/a" if accuracy is None else f"{100 * accuracy:.2f}%"
    tight = sum(w["needed"] < w["declared"] for w in widths.values())
    print(f"hwsim run: {len(texts)} samples, mean length {np.mean(report['seq_lens']):.1f} tokens, accuracy {acc}, "
          f"onnxruntime checked {report['ort_checked']} (0 mismatches); {tight}/{len(widths)} tensors use fewer bits "
          f"than declared; report {args.report}")
    if args.text:
        print("\n".join(text_lines(texts, report)))
    if cost_text:
        print(f"on accelerator scenarios, at the mean length:\n{cost_text}", end="")
    return 0
