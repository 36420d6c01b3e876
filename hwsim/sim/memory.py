"""The memory model: which level each tensor lives in and how many accesses an op makes.

Rules (documented once, applied to every op by `op_traffic`):

1. Every op reads each of its inputs once and writes each of its outputs once, per sample
   (activation tensors carry the batch as their leading axis; counts are per sample times B).
2. Params (initializers) are read once per inference (per sample) from the level of
   `MemoryPlan.param_level`: DRAM unless `HwConfig.weights_on_chip` and the params of the whole
   graph fit in SRAM (`plan_memory`), then SRAM. Weights are assumed stationary while one sample's
   rows pass through (one read per weight per sample, not per row).
3. An activation tensor lives in SRAM when its per-sample size fits the activation budget (SRAM
   minus the params held there), else it spills to DRAM; its reads and writes go to that level.
4. View ops (Reshape, Squeeze, ...) move no data. Gathers read only the selected elements
   (TakeFirst reads one token per sample; Embed reads n rows of the word and position tables and
   one row of the type table) and do not count their constant index inputs.
5. Fused attention keeps each score row in the register file; the per-head score matrix that the
   mixing stage consumes (P for dot-product, Z for inhibitor: n x m elements at their declared
   width) stays in the register file when it fits `rf_bytes`, else it is written once and read once
   at the level where it fits. Other fused intermediates (LayerNorm's centred row, requant
   temporaries) stay in registers and cost no access.

Accesses are counted in words of the level's width (`read.sram@64`: 64-bit SRAM words, each
tensor access rounded up to whole words) and in bytes (`bytes.read.sram@8`: traffic volume, not an
action: pricing skips `bytes.` keys). An element takes the hardware word of its declared width,
`quant.ir.spec.word_bytes` (signed and unsigned alike; not the numpy storage type of the software).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from math import prod
from typing import Iterable

from hwsim.sim.actions import TRAFFIC_PREFIX, ActionKey
from hwsim.sim.hwconfig import HwConfig
from quant.ir import spec
from quant.ir.spec import word_bytes


@dataclass(frozen=True)
class MemoryPlan:
    """Where params live (`"sram"` or `"dram"`) and how many SRAM bytes are left for activations."""

    param_level: str
    act_budget_bytes: int


def _batch(site) -> int:
    return site.out_shapes[0][0] if site.out_shapes and site.out_shapes[0] else 1


def param_bytes(site) -> int:
    """Bytes of the params (initializers) that one op reads."""
    return sum(prod(shape) * word_bytes(bits)
               for shape, bits, is_param in zip(site.in_shapes, site.in_bits, site.in_is_param) if is_param)


def plan_memory(sites: Iterable, hw: HwConfig) -> MemoryPlan:
    """Decide the params' level for a whole graph (rule 2). Shared params used by two sites are
    counted twice here (sites carry no tensor names): a conservative fit test."""
    total = sum(param_bytes(site) for site in sites)
    if hw.weights_on_chip and total <= hw.sram_bytes:
        return MemoryPlan("sram", hw.sram_bytes - total)
    return MemoryPlan("dram", hw.sram_bytes)


def default_plan(hw: HwConfig) -> MemoryPlan:
    """The plan when no graph is at hand: valid only for `weights_on_chip = false`."""
    if hw.weights_on_chip:
        raise ValueError("weights_on_chip needs the whole graph: pass plan=plan_memory(sites, hw) "
                         "to count_op, or call hwsim.sim.counting.count_graph")
    return MemoryPlan("dram", hw.sram_bytes)


def _access(counts: Counter, direction: str, level: str, nbytes: int, times: int, hw: HwConfig) -> None:
    """Add `times` accesses of `nbytes` bytes each at `level`."""
    if nbytes <= 0 or times <= 0:
        return
    word = hw.sram_word_bits if level == "sram" else hw.dram_word_bits
    counts[ActionKey.of(f"{direction}.{level}", word).format()] += -(-nbytes * 8 // word) * times
    counts[ActionKey.of(f"{TRAFFIC_PREFIX}{direction}.{level}", 8).format()] += nbytes * times


def _act_level(nbytes: int, plan: MemoryPlan) -> str:
    return "sram" if nbytes <= plan.act_budget_bytes else "dram"


def read_elems(site) -> list[int | None]:
    """Elements read per sample (activations) or per copy (params) of each input; None = skip."""
    batch = _batch(site)
    full = [prod(s) // batch if not p else prod(s) for s, p in zip(site.in_shapes, site.in_is_param)]
    if spec.moves(site.op_type) == "gather":
        return [prod(site.out_shapes[0]) // batch] + [None] * (len(full) - 1)
    if site.op_type == "Embed":
        n, dim = site.in_shapes[0][-1], site.out_shapes[0][-1]
        return [full[0], n * dim, n * dim] + [dim] * (len(full) - 3)
    return full


def op_traffic(site, hw: HwConfig, plan: MemoryPlan) -> Counter:
    """Memory accesses of one op over the whole batch (rules 1-5)."""
    counts: Counter = Counter()
    if spec.moves(site.op_type) == "view":
        return counts
    batch = _batch(site)
    for elems, bits, is_param in zip(read_elems(site), site.in_bits, site.in_is_param):
        if elems is None:
            continue
        nbytes = elems * word_bytes(bits)
        level = plan.param_level if is_param else _act_level(nbytes, plan)
        _access(counts, "read", level, nbytes, batch, hw)
    for shape, bits in zip(site.out_shapes, site.out_bits):
        nbytes = prod(shape) // batch * word_bytes(bits)
        _access(counts, "write", _act_level(nbytes, plan), nbytes, batch, hw)
    if site.op_type in spec.OPS and spec.OPS[site.op_type].score_bits_attr:
        _score_matrix(counts, site, hw, plan)
    return counts


def _score_matrix(counts: Counter, site, hw: HwConfig, plan: MemoryPlan) -> None:
    """Rule 5: the n x m matrix the mixing stage consumes, per head."""
    batch, heads, n, _ = site.in_shapes[0]
    m = site.in_shapes[1][2]
    nbytes = n * m * word_bytes(site.attrs[spec.OPS[site.op_type].score_bits_attr])
    if nbytes <= hw.rf_bytes:
        return
    level = _act_level(nbytes, plan)
    _access(counts, "write", level, nbytes, batch * heads, hw)
    _access(counts, "read", level, nbytes, batch * heads, hw)
