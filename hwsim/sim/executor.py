"""Run a `Plan` node by node with the Numba kernels, check declared widths, count actions.

After each node every output is checked against its declared width (`overflow`): 'error' raises
`SimError` naming node, tensor, value and width; 'saturate' clamps to the range; 'wrap' wraps two's
complement. Internal accumulators (Linear `acc`, DotAttention `scores`/`pv`, InhibitorAttention
`l1`/`h`, as in `quant.intops.reference`) are checked in 'error' mode against their declared width
(`plan.formats["node/label"]`: Linear and DotAttention `acc_bits`, else 32) and recorded as `node/label`; they
cannot be saturated or wrapped after the fact.

`max_abs` (with `track_widths`) records per tensor and accumulator the two's-complement magnitude
`max(v, -v - 1)` over every value seen (`hwsim.sim.kernels.requant.tc_magnitude`): a signed value fits
`bits` bits exactly when it is at most `2**(bits-1) - 1`, so the check accepts and rejects exactly
what `quant.intops.reference` does (-2**31 fits 32 bits) and `max_abs.bit_length() + 1` is the signed width
needed.

Counting calls `hwsim.sim.counting.count_graph` on the per-node `OpSite`s (shapes, declared widths,
params) once per distinct set of input shapes; later samples of the same shape reuse the counts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.sim.graph import Plan, SimError
from quant.ir import spec

OVERFLOW_MODES = ("error", "saturate", "wrap")


@dataclass
class ExecResult:
    outputs: dict[str, np.ndarray]
    counts: dict[str, dict[str, int]] | None
    max_abs: dict[str, int]
    shapes: dict[str, tuple[int, ...]] | None = None   # every tensor's shape (op sites: `op_site`)


def _fit(plan: Plan, node: str, tensor: str, x: np.ndarray, overflow: str, max_abs: dict[str, int] | None) -> np.ndarray:
    """Check/saturate/wrap `x` to the declared width of `tensor`; return it in its storage dtype."""
    info = plan.formats[tensor]
    lo, hi = spec.int_range(info.bits, info.signed)
    if x.size:
        mn, mx = int(x.min()), int(x.max())
        if max_abs is not None:
            max_abs[tensor] = max(max_abs.get(tensor, 0), mx, -mn - 1)  # tc_magnitude
        if mn < lo or mx > hi:
            if overflow == "error":
                value = mn if mn < lo else mx
                raise SimError(f"node {node!r}: tensor {tensor!r} holds {value}, outside its declared "
                               f"{info.bits}-bit {'signed' if info.signed else 'unsigned'} range [{lo}, {hi}]; "
                               f"widen the width, lower the shifts, or run with --overflow saturate|wrap")
            x = x.astype(np.int64)
            if overflow == "saturate":
                x = np.clip(x, lo, hi)
            else:
                x = ((x - lo) & ((1 << info.bits) - 1)) + lo
    dtype = plan.dtype_of(tensor)
    return x if x.dtype == dtype else x.astype(dtype)


def op_site(plan: Plan, node, shapes: dict[str, tuple[int, ...]]):
    from hwsim.sim.counting import OpSite
    bits = lambda t: plan.formats[t].bits if t in plan.formats else 64  # noqa: E731 - shape operands: int64
    ins = [t for t in node.inputs if t]
    per_head = spec.OPS[node.op_type].head_attrs if node.op_type in spec.OPS else ()
    attrs = {k: v for k, v in node.attrs.items() if isinstance(v, int) or k in per_head}
    return OpSite(node.op_type, node.name, attrs,
                  tuple(shapes[t] for t in ins), tuple(shapes[t] for t in node.outputs),
                  tuple(bits(t) for t in ins), tuple(bits(t) for t in node.outputs),
                  tuple(t in plan.params for t in ins))


def _counts(plan: Plan, shapes: dict[str, tuple[int, ...]]) -> dict[str, dict[str, int]]:
    key = tuple(shapes[t] for t in plan.inputs)
    if key not in plan.count_cache:
        from hwsim.sim.counting import count_graph
        from hwsim.sim.hwconfig import load_hw
        hw = plan.hw if plan.hw is not None else load_hw(None)
        plan.count_cache[key] = count_graph([op_site(plan, node, shapes) for node in plan.nodes], hw)
    return plan.count_cache[key]


def execute(plan: Plan, input_ids, attention_mask=None, overflow: str = "error", count: bool = True,
            track_widths: bool = True) -> ExecResult:
    """Run `plan` on `input_ids` [B, n] (and `attention_mask` [B, n], default all ones)."""
    if overflow not in OVERFLOW_MODES:
        raise SimError(f"unknown overflow mode {overflow!r}: use one of {', '.join(OVERFLOW_MODES)}")
    ids = np.asarray(input_ids)
    if ids.ndim == 1:
        ids = ids[None, :]
    mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask)
    if mask.ndim == 1:
        mask = mask[None, :]
    if ids.ndim != 2 or mask.shape != ids.shape or not np.issubdtype(ids.dtype, np.integer) \
            or not np.issubdtype(mask.dtype, np.integer):
        raise SimError(f"input_ids {ids.shape} {ids.dtype} and attention_mask {mask.shape} {mask.dtype} must be "
                       f"integer arrays of one shape [batch, seq]")
    env: dict[str, np.ndarray] = dict(plan.params)
    for name, value in zip(plan.inputs, (ids.astype(np.int64), mask.astype(np.int64))):
        env[name] = value
    max_abs: dict[str, int] | None = {} if track_widths else None
    for node in plan.nodes:
        args = [env[t] if t else None for t in node.inputs]
        try:
            outs, peaks = node.kernel(*args)
        except ValueError as err:
            shapes = ", ".join(f"{t} {env[t].shape}" for t in node.inputs if t)
            raise SimError(f"node {node.name!r} ({node.op_type}): {err} (inputs: {shapes})") from None
        for label, peak in peaks.items():
            key = f"{node.name}/{label}"
            if max_abs is not None:
                max_abs[key] = max(max_abs.get(key, 0), peak)
            width = plan.formats[key].bits if key in plan.formats else 32
            if overflow == "error" and peak > (1 << (width - 1)) - 1:
                raise SimError(f"node {node.name!r}: internal accumulator {key!r} reaches magnitude {peak}, beyond "
                               f"its {width}-bit accumulator; declare acc_bits=64 or lower the input widths "
                               f"or the shifts feeding it")
        for tensor, value in zip(node.outputs, outs):
            env[tensor] = _fit(plan, node.name, tensor, value, overflow, max_abs) \
                if spec.moves(node.op_type) not in ("view", "permute") else value
    shapes = {t: tuple(v.shape) for t, v in env.items() if v is not None}
    counts = _counts(plan, shapes) if count else None
    return ExecResult({name: env[name] for name in plan.outputs}, counts, max_abs or {}, shapes)
