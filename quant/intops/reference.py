"""The PyTorch integer reference: execute an `IntProgram` node by node with `quant.intops.OPS`.

Every tensor (inputs, params, node outputs) is checked against its declared width in
`prog.tensors`; the internal accumulators of Linear, DotAttention and InhibitorAttention (see
`quant.ir.spec.OpSpec.accumulators`) are checked against their declared width (Linear and DotAttention
`acc_bits`, 32 or 64; 32 for the inhibitor's). `quant.ir.widths` proves them before a run; these checks
catch what a program declared without that proof. A value that does not fit raises
OverflowError naming the node, the tensor, the value and the width: accumulators never saturate,
so a program whose widths are too small is wrong, not approximate. Requantised outputs saturate by
definition and always fit their declared width when it matches the op's `bits`.
"""
from __future__ import annotations

import torch

from quant.intops import OPS
from quant.intops.base import as_i64, int_range
from quant.ir import spec
from quant.ir.program import IntProgram, TensorInfo


def check_fits(tensor: torch.Tensor, bits: int, signed: bool, where: str, name: str) -> None:
    """Raise OverflowError when any element of `tensor` lies outside the `bits`-bit range."""
    if tensor.numel() == 0:
        return
    lo, hi = int_range(bits, signed)
    tmin, tmax = int(tensor.min()), int(tensor.max())
    if tmin < lo or tmax > hi:
        value = tmin if tmin < lo else tmax
        kind = "signed" if signed else "unsigned"
        raise OverflowError(f"node {where}: tensor {name!r} holds {value}, outside its declared {bits}-bit {kind} "
                            f"range [{lo}, {hi}]; widen the declared width or lower the shifts feeding it")


def _declared(prog: IntProgram, name: str) -> TensorInfo:
    if name not in prog.tensors:
        raise KeyError(f"tensor {name!r} has no declared format in prog.tensors; every tensor needs a TensorInfo")
    return prog.tensors[name]


def run_program(prog: IntProgram, input_ids, attention_mask=None, *,
                keep_all: bool = False) -> dict[str, torch.Tensor]:
    """Run `prog` on `input_ids` [B, n] (and `attention_mask` [B, n], default all ones).

    Returns {output name: int64 tensor} (`logits` [B, num_labels] for encoder classifiers), or with
    `keep_all=True` every tensor of the run (inputs, params, intermediates), for debugging and
    width analysis. Raises OverflowError as described in the module docstring.
    """
    input_ids = as_i64(input_ids)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    env: dict[str, torch.Tensor] = {}
    for name, value in zip(prog.inputs, (input_ids, as_i64(attention_mask))):
        env[name] = value
    for name, arr in prog.params.items():
        env[name] = as_i64(torch.from_numpy(arr.copy()))
    for name, value in env.items():
        info = _declared(prog, name)
        check_fits(value, info.bits, info.signed, "<inputs/params>", name)

    for node in prog.nodes:
        if node.op not in OPS:
            raise KeyError(f"node {node.name!r}: unknown op {node.op!r}; known ops: {sorted(OPS)}")
        missing = [t for t in node.inputs if t not in env]
        if missing:
            raise KeyError(f"node {node.name!r} reads {missing} before any node writes them")
        kwargs = spec.with_defaults(node.op, node.attrs)
        if spec.OPS[node.op].accumulators:
            kwargs["check"] = lambda label, t, bits, node=node: check_fits(
                t, bits, True, f"{node.name!r} ({node.op})", f"{node.name}/{label}")
        out = OPS[node.op](*(env[t] for t in node.inputs), **kwargs)
        (out_name,) = node.outputs
        info = _declared(prog, out_name)
        check_fits(out, info.bits, info.signed, f"{node.name!r} ({node.op})", out_name)
        env[out_name] = out

    if keep_all:
        return env
    return {name: env[name] for name in prog.outputs}
