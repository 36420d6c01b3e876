"""`simulate(model_path, input_ids)`: the one-call entry point of the bit-accurate simulator."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwsim.sim.executor import execute
from hwsim.sim.graph import Plan, load_plan

_PLANS: dict[tuple[str, float, object], Plan] = {}


@dataclass
class SimResult:
    outputs: dict[str, np.ndarray]              # output name -> integer array (logits: int32 [B, labels])
    counts: dict[str, dict[str, int]] | None    # node -> {"action@width": count}
    max_abs: dict[str, int]                     # tensor (or node/accumulator) -> max |value| seen


def get_plan(model_path, hw=None) -> Plan:
    """The loaded plan of `model_path`, cached per (resolved path, modification time, hw)."""
    path = Path(model_path).resolve()
    key = (str(path), os.path.getmtime(path) if path.exists() else 0.0, hw)
    if key not in _PLANS:
        _PLANS[key] = load_plan(path, hw)
    return _PLANS[key]


def simulate(model_path, input_ids, attention_mask=None, overflow: str = "error", hw=None) -> SimResult:
    """Run the integer ONNX model at `model_path` bit for bit on `input_ids` [B, n] (int), with
    `attention_mask` [B, n] (default all ones); `overflow` 'error' | 'saturate' | 'wrap'; `hw` a
    `hwsim.sim.hwconfig.HwConfig` for counting (default: the packaged config)."""
    res = execute(get_plan(model_path, hw), input_ids, attention_mask, overflow=overflow)
    return SimResult(res.outputs, res.counts, res.max_abs)
