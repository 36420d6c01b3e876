"""Export as a library call: a quantized model, or the run folder of `hwsim train`, -> integer ONNX.

    export_quant_model(qmodel, "m.onnx", tokenizer="runs/inh8")
    export_run("runs/inh8", "m.onnx")    # records the run's tokenizer, task and max_length

Both go through the same steps: QuantClassifier -> `quant.qat.lower.lower` (IntProgram) ->
`export.onnx_lower.to_onnx` -> `export.checks.validate` -> atomic save (`export.save.save_model`).
Nothing is written when a step fails. torch is imported inside the functions, so that
`import export` stays free of it.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from models.errors import UserError


def export_quant_model(qmodel, out: str | os.PathLike, tokenizer: str | os.PathLike | None = None,
                       task: str | None = None, max_length: int | None = None):
    """QuantClassifier -> validated integer ONNX written atomically to `out`; returns the ModelProto.

    `tokenizer`: a folder with `tokenizer.json` or `vocab.txt`; when it holds one, its resolved path
    is recorded in the model's metadata so that `hwsim run` finds the tokenizer without being told.
    `task`: the task the model was trained on, recorded so that `hwsim run --text` names the labels.
    `max_length`: the truncation it was trained and evaluated with, recorded so that `hwsim run`
    truncates its texts the same way.
    """
    from export.checks import validate
    from export.onnx_lower import to_onnx
    from export.save import save_model
    from quant.qat.lower import lower

    prog = lower(qmodel.eval())
    if tokenizer is not None and _holds_tokenizer(Path(tokenizer)):
        prog = replace(prog, meta={**prog.meta, "tokenizer": str(Path(tokenizer).resolve())})
    if task is not None:
        prog = replace(prog, meta={**prog.meta, "task": task})
    if max_length is not None:
        prog = replace(prog, meta={**prog.meta, "max_length": max_length})
    model = to_onnx(prog)
    validate(model)
    save_model(model, out)
    return model


def load_run(run_dir: str | os.PathLike):
    """The best QuantClassifier of a `hwsim train` QAT run folder; UserError when there is none."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run folder {run_dir} does not exist; train one with `hwsim train ... --out {run_dir}`")
    from quant.train.checkpoint import load_quant_run
    return load_quant_run(run_dir)


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike):
    """`export_quant_model` of the run's best checkpoint, with the run's tokenizer, task and
    max_length recorded."""
    return export_quant_model(load_run(run_dir), out, tokenizer=run_dir, task=run_task(run_dir),
                              max_length=run_max_length(run_dir))


def _train_config(run_dir: str | os.PathLike) -> dict:
    """The train_config a `hwsim train` run recorded in its config.json ({} if none)."""
    from quant.train.checkpoint import read_quant_meta
    config = read_quant_meta(run_dir).get("extra", {}).get("train_config", {})
    return config if isinstance(config, dict) else {}


def run_task(run_dir: str | os.PathLike) -> str | None:
    """The task a `hwsim train` run was trained on (its config.json train_config), None if unrecorded."""
    task = _train_config(run_dir).get("task")
    return task if isinstance(task, str) else None


def run_max_length(run_dir: str | os.PathLike) -> int | None:
    """The truncation a `hwsim train` run was trained and evaluated with (its train_config
    max_length), None if unrecorded."""
    length = _train_config(run_dir).get("max_length")
    return length if isinstance(length, int) and not isinstance(length, bool) and length > 0 else None


def _holds_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file()
