"""`IntProgram`: the integer model as a list of semantic integer ops on named tensors.

This is the one specification that the three executors share:

- `quant.intops.reference.run_program` executes it in torch int64 with the pure functions of `quant.intops`
  (the PyTorch integer reference);
- `export` lowers each node to an ONNX node (a model-local function in domain `hwsim.int`, or a
  standard op for pure data movement) that onnxruntime runs;
- `hwsim` executes that ONNX graph with fused Numba kernels and counts every action.

Op names, inputs and attributes are listed in `docs/DESIGN.md`; `quant.intops.OPS` holds them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class TensorInfo:
    """Declared format of a tensor: `real = int * 2**-exp`, held in `bits` bits (two's complement
    when `signed`). `exp` is None for tensors without a real-valued meaning (ids, masks)."""

    bits: int
    signed: bool = True
    exp: int | None = None


@dataclass(frozen=True)
class Node:
    """One integer op: `outputs = op(*inputs, **attrs)`; every attribute is a Python int."""

    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))


@dataclass(frozen=True)
class IntProgram:
    """A whole integer model. `params` are integer numpy arrays (weights, biases, tables);
    `tensors` declares the format of every param and every intermediate tensor; `meta` carries the
    model facts a runner needs (vocab_size, max_position, hidden, heads, layers, attention,
    logits_exp, num_labels, ...)."""

    nodes: tuple[Node, ...]
    params: Mapping[str, np.ndarray]
    tensors: Mapping[str, TensorInfo]
    inputs: tuple[str, ...] = ("input_ids", "attention_mask")
    outputs: tuple[str, ...] = ("logits",)
    meta: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, arr in self.params.items():
            if not np.issubdtype(np.asarray(arr).dtype, np.integer):
                raise TypeError(f"param {name!r} has dtype {np.asarray(arr).dtype}; IntProgram params are integers")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "tensors", MappingProxyType(dict(self.tensors)))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))


def storage_dtype(info: TensorInfo) -> np.dtype:
    """The narrowest numpy integer type that holds `info.bits` bits: uint8 for unsigned up to 8
    bits, else the signed int8/16/32/64 that holds the range (an unsigned b-bit tensor needs b+1
    signed bits, so unsigned 16-bit is stored in int32)."""
    if not info.signed and info.bits <= 8:
        return np.dtype(np.uint8)
    need = info.bits if info.signed else info.bits + 1
    for bits, dt in ((8, np.int8), (16, np.int16), (32, np.int32), (64, np.int64)):
        if need <= bits:
            return np.dtype(dt)
    raise ValueError(f"no integer storage type for {info.bits} bits")
