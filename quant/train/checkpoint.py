"""Training state on disk (for `--resume`) and the quantized run folder that `export` reads.

Training state: one file `OUT/checkpoints/step-NNNNNNN.pt` per save, written with `torch.save` via
`atomic_path` and read back with `torch.load(weights_only=True)`. It holds the model, optimizer and
scheduler state dicts, every rank's RNG states (torch CPU, CUDA when present, Python `random`), the
global `step` (the position in the data: epoch and step within it; the batches themselves are a
function of seed, epoch and the examples' lengths, `quant.train.sampler`), and a JSON string with
the rest (config, best metric so far, history). The newest `KEEP` files are kept. A run killed while writing (SIGKILL: no cleanup runs) leaves the temporary
`.NAME.*.part` of `atomic_path` beside the previous complete file; `remove_partial_files` deletes
those when the next run on the same `OUT` starts.

Quantized run folder (the best QAT checkpoint): `model.safetensors` (the QuantClassifier state
dict) and `config.json` = {"format": "inhibitor-hwsim-quant", "encoder_config", "quant_config",
"extra"}; `load_quant_run(dir)` rebuilds the model from those two files.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from models.errors import UserError
from models.files import atomic_path, write_text_atomic

KEEP = 2
RUN_FILES = ("model.safetensors", "config.json", "metrics.json")  # written atomically into OUT
QUANT_FORMAT = "inhibitor-hwsim-quant"
_NAME = re.compile(r"^step-(\d+)\.pt$")


# ---------------------------------------------------------------- RNG states

def rng_state() -> dict[str, Any]:
    """This process's RNG states, in types that `torch.load(weights_only=True)` accepts."""
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- training state

def checkpoint_dir(out: str | os.PathLike) -> Path:
    return Path(out) / "checkpoints"


def latest_checkpoint(out: str | os.PathLike) -> Path | None:
    """The training-state file with the highest step in `OUT/checkpoints`, or None."""
    folder = checkpoint_dir(out)
    found = [(int(m.group(1)), p) for p in folder.glob("step-*.pt") if (m := _NAME.match(p.name))]
    return max(found)[1] if found else None


def save_state(out: str | os.PathLike, step: int, state: dict[str, Any]) -> Path:
    """Write `state` (tensors, dicts, lists, numbers, strings) as checkpoint `step`; prune old ones."""
    folder = checkpoint_dir(out)
    target = folder / f"step-{step:07d}.pt"
    try:
        with atomic_path(target) as tmp:
            torch.save(state, tmp)
    except (OSError, RuntimeError) as err:  # a full disk reaches torch.save's zip writer as a RuntimeError
        free = shutil.disk_usage(folder).free / 2**20
        raise UserError(f"cannot write the training checkpoint {target} ({type(err).__name__}: {err}); "
                        f"{free:,.0f} MiB free on its disk: free some space, or checkpoint less often "
                        f"(a larger --save-every), then rerun with --resume") from err
    older = sorted((int(m.group(1)), p) for p in folder.glob("step-*.pt") if (m := _NAME.match(p.name)))
    for _, path in older[:-KEEP]:
        path.unlink(missing_ok=True)
    return target


def remove_partial_files(out: str | os.PathLike) -> list[Path]:
    """Delete the `atomic_path` temporaries of the files a run writes (training states, model.safetensors,
    config.json, metrics.json) left in `out` by a killed run; complete files are untouched."""
    out = Path(out)
    found = [p for name in RUN_FILES for p in out.glob(f".{name}.*.part")]
    found += list(checkpoint_dir(out).glob(".step-*.pt.*.part"))
    for path in found:
        path.unlink(missing_ok=True)
    return found


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign file: same message to the user
        raise UserError(f"cannot read the training checkpoint {path} ({type(err).__name__}: {err}); "
                        f"delete it to resume from the one before, or start again without --resume") from err


# ---------------------------------------------------------------- quantized run folder

def save_quant_run(qmodel: torch.nn.Module, encoder_cfg, quant_cfg, out_dir: str | os.PathLike,
                   tokenizer=None, extra: dict[str, Any] | None = None) -> Path:
    """Write the quantized model's state dict and both configs; config.json last (its presence
    marks a complete folder)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().clone() for k, v in qmodel.state_dict().items()}  # q/k share quantizers
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    meta = {"format": QUANT_FORMAT, "encoder_config": encoder_cfg.to_dict(),
            "quant_config": quant_cfg.to_dict(), "extra": extra or {}}
    write_text_atomic(out / "config.json", json.dumps(meta, indent=2) + "\n")
    return out


def read_quant_meta(run_dir: str | os.PathLike) -> dict[str, Any]:
    folder = Path(run_dir)
    path = folder / "config.json"
    if not path.is_file():
        raise UserError(f"{path} not found: {folder} is not a quantized training run; "
                        f"train one with `hwsim train` (without --float) --out {folder}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}); train the run again") from err
    if not isinstance(meta, dict) or meta.get("format") != QUANT_FORMAT:
        raise UserError(f"{folder} holds a float checkpoint, not a quantized run: train with "
                        f"`hwsim train` without --float, or load it with models.loading.load_checkpoint")
    return meta


def load_quant_run(run_dir: str | os.PathLike):
    """The QuantClassifier (eval mode) saved by a QAT run in `run_dir`."""
    from models.config import EncoderConfig
    from quant.qat.config import QuantConfig
    from quant.qat.model import QuantClassifier

    meta = read_quant_meta(run_dir)
    enc_cfg = EncoderConfig.from_dict(meta["encoder_config"])
    quant_cfg = QuantConfig.from_dict(meta["quant_config"])
    weights_path = Path(run_dir) / "model.safetensors"
    try:
        weights = load_file(str(weights_path))
    except Exception as err:
        raise UserError(f"cannot read {weights_path} ({type(err).__name__}: {err}); train the run again") from err
    qmodel = QuantClassifier(enc_cfg, quant_cfg)
    try:
        qmodel.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise UserError(f"{weights_path} does not match its config.json ({str(err).splitlines()[0]}); "
                        f"train the run again") from err
    return qmodel.eval()
