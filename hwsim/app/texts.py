"""Texts -> token ids -> a run report: the tokenizer of a model and `simulate_texts`.

    from hwsim.sim.graph import load_plan
    from hwsim.app.texts import resolve_tokenizer, simulate_texts
    plan = load_plan("model.onnx")
    report = simulate_texts(plan, "model.onnx", ["a gripping, funny film"], None,
                            resolve_tokenizer(None, plan.meta))
"""
from __future__ import annotations

import numpy as np

from hwsim.app.parallel import RunSpec, simulate_local


def resolve_tokenizer(name_or_dir: str | None, meta: dict):
    """The tokenizer `name_or_dir` (a folder or teacher name), else the model's hwsim.meta
    'tokenizer', else minilm's."""
    from models.loading import load_tokenizer
    from models.teacher import resolve_teacher
    return load_tokenizer(resolve_teacher(name_or_dir or meta.get("tokenizer") or "minilm"))


def max_tokens(meta: dict, max_length: int | None = None) -> int:
    """Truncation length: `max_length`, else the model's `max_length` (the truncation it was trained
    and evaluated with, `quant.ir.contract.ModelMeta`), else (a model exported before it was
    recorded) its position table.

    >>> max_tokens({"max_position": 512, "max_length": 64}), max_tokens({"max_position": 512}, 100)
    (64, 100)
    >>> max_tokens({"max_position": 512})
    512
    """
    return max_length or meta.get("max_length") or int(meta.get("max_position", 512))


def encode_texts(texts, tok, max_length: int) -> list[np.ndarray]:
    """Token ids (n_i,) int64 of each text; a tuple or list is a sentence pair (a, b)."""
    ids = []
    for text in texts:
        parts = tuple(text) if isinstance(text, (tuple, list)) else (text,)
        ids.append(np.asarray(tok(*parts, truncation=True, max_length=max_length)["input_ids"], dtype=np.int64))
    return ids


def simulate_texts(plan, model_path, texts, labels, tok, check_ort: int = 0, overflow: str = "error",
                   progress: bool = True, max_length: int | None = None, hw: str | None = None) -> dict:
    """Simulate `texts` one at a time at their own length (batch 1, no padding), in this process;
    returns the run report as a dict. `check_ort`: 0 = no onnxruntime check, -1 = every sample,
    N = the first N. Texts are truncated to `max_length` tokens (default: `max_tokens`, what the model
    was trained and evaluated with).
    For worker processes or a Dask cluster see `hwsim.app.parallel.simulate_pool` and
    `hwsim.app.dask_run.simulate_dask`, which take the `encode_texts` ids and give the same report."""
    ids = encode_texts(texts, tok, max_tokens(plan.meta, max_length))
    spec = RunSpec(str(model_path), hw, overflow, check_ort)
    return simulate_local(plan, spec, ids, labels, progress)
