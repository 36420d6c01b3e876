"""`IntProgram`: the integer model as a list of semantic integer ops on named tensors.

This is the one specification that the three executors share:

- `quant.intops.reference.run_program` executes it in torch int64 with the pure functions of `quant.intops`
  (the PyTorch integer reference);
- `export` lowers each node to an ONNX node (a model-local function in domain `hwsim.int`, or a
  standard op for pure data movement) that onnxruntime runs;
- `hwsim` executes that ONNX graph with fused Numba kernels and counts every action.

Op names, inputs and attributes are listed in `docs/DESIGN.md`; `quant.ir.spec.OPS` holds them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from quant.ir import spec


@dataclass(frozen=True)
class TensorInfo:
    """Declared format of a tensor: `real = int * 2**-exp`, held in `bits` bits (two's complement
    when `signed`). `exp` is None for tensors without a real-valued meaning (ids, masks)."""

    bits: int
    signed: bool = True
    exp: int | None = None


@dataclass(frozen=True)
class Node:
    """One integer op: `outputs = op(*inputs, **attrs)`; every attribute is a Python int, or for an
    attribute the op takes per head (`spec.OpSpec.head_attrs`) possibly a tuple of ints, one per head
    (a list is stored as a tuple)."""

    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, int | tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        attrs = {k: tuple(v) if spec.is_per_head(v) else v for k, v in self.attrs.items()}
        object.__setattr__(self, "attrs", MappingProxyType(attrs))


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
    """The numpy storage type of a tensor of format `info` (`quant.ir.spec.storage_dtype`)."""
    return spec.storage_dtype(info.bits, info.signed)
