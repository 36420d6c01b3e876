"""The cost of one inference of an exported model on one scenario: energy by where it is spent,
cycles, latency, PE utilisation and area. Every figure is a model estimate, not a measurement.

How a mapped scenario is costed (each rule applied to every node of the graph):
1. Arithmetic: hwsim's exact per-width action counts of every node (`hwsim.counting`), priced with
   the energy table; the component of a node is `hwsim.report.COMPONENT_OF_OP`.
2. GEMM-shaped stages (`hwsim.cost.stages`: Linear, attention scores and mixing) are mapped by
   ZigZag on the scenario's array (the inhibitor's on the attention unit when the scenario has one);
   their data movement is ZigZag's accesses per memory level x the level's cost, classed by the
   level's `mem_type`: dram, buffer (sram), register (reg), link (PE-to-PE operand registers).
   Operand homes: weights live in `weights_home`; activation operands of a stage (its input, its
   output, and K/V/P/Z) live in `activations_home` while they fit together there, smallest first,
   and spill to DRAM otherwise.
3. Everything else runs on the vector unit (LayerNorm, residual Add, embedding, ScaleChannels, and
   inside attention the softmax or centring/clamp between the two stages): its traffic is hwsim's
   memory rules (`hwsim.memory`: inputs read and outputs written once, at the activations home while
   the tensor fits, else DRAM; params at the weights' level), priced at those levels' word costs;
   the row-wise steps inside attention work on the score stream and add no traffic; the embedding
   tables stay in DRAM (n rows gathered per inference) in every scenario. Head
   split/merge permutations are address patterns of the next stage: no traffic, no cycles.
   Vector cycles: elements / `vector_lanes` per pass (`VECTOR_PASSES`).
4. Latency: stage cycles (ZigZag, including memory stalls) plus vector cycles, in sequence (no
   overlap between the array and the vector unit), at `clock_mhz`. Utilisation: multiply-accumulate
   sites / (array cycles x PEs).
5. Batch B: rows (and attention groups) are B times larger, weights are read once per batch;
   energy is reported per inference (batch energy / B), latency per batch.
6. Area: memories (sram from the table; per-PE registers x PEs), PE arithmetic units
   (`hwsim.cost.pricing.pe_units`) x PEs, the attention unit's, and the vector unit's lanes.
7. Leakage: the memory table's SRAM leakage power x latency per inference, reported apart and left
   out of the total: the table's CACTI rows use high-performance (itrs-hp) cells, whose leakage
   (1.2 W for 1 MiB) is an upper bound no product SRAM of that size would ship with.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from math import prod
from typing import Callable, Mapping

import numpy as np

from hwsim.cost.pricing import (REG_KINDS, pe_units, resolve_accelerator, units_area_mm2, vector_lane_units,
                                widest_port)
from hwsim.cost.scenario import OPERAND_OF, Scenario, dram_level, homes_accelerator
from hwsim.cost.stages import GemmStage, gemm_stages
from hwsim.cost.zigzag_map import MappedStage, map_stage
from hwsim.counting import count_op
from hwsim.energy import price
from hwsim.hwconfig import HwConfig
from hwsim.memory import MemoryPlan
from hwsim.report import COMPONENT_OF_OP, is_memory
from quant.ir import spec

ENERGY_CLASSES = ("dram", "buffer", "register", "link", "leakage")
ARITH = "arith."
VECTOR_PASSES = {"LayerNorm": 2, "DotAttention": 2, "InhibitorAttention": 1}
"""Passes over the elements: LayerNorm statistics then normalisation; softmax max/exp-sum then
normalise; the inhibitor's centring/clamp in one pass (two when it centres)."""
CLASS_OF_MEM = {"dram": "dram", "sram": "buffer", "reg": "register", "link": "link"}
MapFn = Callable[[GemmStage, dict, str, int], MappedStage]


@dataclass(frozen=True)
class Tables:
    """The data a mapped cost reads: energy pJ per action, memory table, area um^2 per unit."""

    energy: object
    memory: object
    area: object


@dataclass(frozen=True)
class CostResult:
    scenario: str
    model: str
    variant: str
    seq_len: int
    batch: int
    energy_pj: Mapping[str, float]           # per inference, by class (ENERGY_CLASSES, arith.<component>)
    attention_pj: float                      # per inference: attention arithmetic + its data movement
    cycles: float | None = None              # per batch
    latency_us: float | None = None          # per batch
    utilisation: float | None = None
    area_mm2: Mapping[str, float] = field(default_factory=dict)

    @property
    def total_pj(self) -> float:
        """Dynamic energy per inference; leakage is kept apart (rule 7)."""
        return sum(v for k, v in self.energy_pj.items() if k != "leakage")

    @property
    def area_total_mm2(self) -> float | None:
        return sum(self.area_mm2.values()) if self.area_mm2 else None


def sites_at(plan, seq_len: int) -> list:
    """The op sites of `plan` at one sequence length (batch 1), from one run on constant ids."""
    from hwsim.executor import execute, op_site

    ids = np.full((1, seq_len), 1000 % int(plan.meta.get("vocab_size", 1001)), dtype=np.int64)
    res = execute(plan, ids, np.ones_like(ids), overflow="saturate", count=False, track_widths=False)
    return [op_site(plan, node, res.shapes) for node in plan.nodes]


def _elem_bytes(elems: int, bits: int) -> int:
    return elems * spec.word_bytes(bits)


def stage_homes(stage: GemmStage, scenario: Scenario, acc: Mapping) -> dict[str, str]:
    """Memory operand -> home level for one stage (rule 2 of the module docstring)."""
    elems = stage.operand_elems()
    bits = {"I": stage.bits_i, "W": stage.bits_w, "O": stage.bits_final}
    homes = {OPERAND_OF["W"]: scenario.weights_home} if stage.w_param else {}
    budget = int(acc["memories"][scenario.activations_home]["size"]) // 8
    acts = sorted((op for op in ("I", "W", "O") if op != "W" or not stage.w_param),
                  key=lambda op: _elem_bytes(elems[op], bits[op]))
    used = 0
    for op in acts:
        nbytes = _elem_bytes(elems[op], bits[op])
        on_chip = used + nbytes <= budget
        used += nbytes if on_chip else 0
        homes[OPERAND_OF[op]] = scenario.activations_home if on_chip else dram_level(acc)
    return homes


def _scaled(stage: GemmStage, batch: int) -> GemmStage:
    return replace(stage, rows=stage.rows * batch) if stage.kind == "linear" else replace(stage, groups=stage.groups * batch)


class MappedCost:
    """Costs models on one mapped scenario; `map_fn` maps a stage (default: ZigZag with its disk cache)."""

    def __init__(self, scenario: Scenario, tables: Tables, map_fn: MapFn = map_stage) -> None:
        self.s, self.t, self.map_fn = scenario, tables, map_fn
        self._mapped: dict[tuple, MappedStage] = {}
        self.main = resolve_accelerator(scenario.accelerator, scenario, tables.memory, tables.energy.pj, tables.area.um2)
        self.attn = (resolve_accelerator(scenario.attention_accelerator, scenario, tables.memory, tables.energy.pj,
                                         tables.area.um2) if scenario.attention_accelerator else None)
        gb = self.main["memories"][scenario.activations_home]
        dram = self.main["memories"][dram_level(self.main)]
        self.sram_word, self.dram_word = widest_port(gb), widest_port(dram)
        self.word_pj = {f"read.sram@{self.sram_word}": gb["r_cost"], f"write.sram@{self.sram_word}": gb["w_cost"],
                        f"read.dram@{self.dram_word}": dram["r_cost"], f"write.dram@{self.dram_word}": dram["w_cost"]}

    def _array(self, site) -> tuple[dict, str]:
        if self.attn is not None and site.op_type == "InhibitorAttention":
            return self.attn, self.s.attention_mapping
        return self.main, self.s.mapping

    def _map(self, stage: GemmStage, acc: dict, mapping: str) -> MappedStage:
        homes = stage_homes(stage, self.s, acc)
        key = (stage.shape_key(), tuple(sorted(homes.items())), acc["name"], mapping)
        if key not in self._mapped:    # the layers of an encoder repeat the same stages
            homed = homes_accelerator(acc, homes)
            self._mapped[key] = self.map_fn(stage, homed, mapping, prod(acc["operational_array"]["sizes"]))
        return self._mapped[key]

    def _vector_traffic(self, site, plan: MemoryPlan) -> dict[str, float]:
        from hwsim.memory import op_traffic

        hw = HwConfig(rf_bytes=0, sram_bytes=plan.act_budget_bytes, sram_word_bits=self.sram_word,
                      dram_word_bits=self.dram_word, weights_on_chip=plan.param_level == "sram")
        out: Counter = Counter()
        for key, count in op_traffic(site, hw, plan).items():
            if key in self.word_pj:
                out["dram" if ".dram@" in key else "buffer"] += count * self.word_pj[key]
        return out

    def cost(self, sites: list, model: str, variant: str, seq_len: int) -> CostResult:
        b, s = self.s.batch, self.s
        energy: Counter = Counter()
        attention = 0.0
        cycles = vector_cycles = macs = array_cycles = 0.0
        budget = int(self.main["memories"][s.activations_home]["size"]) // 8 // b
        plan = MemoryPlan("dram" if s.weights_home == dram_level(self.main) else "sram", budget)
        for site in sites:
            moves = spec.moves(site.op_type)
            if moves in ("view", "permute"):
                continue
            component = COMPONENT_OF_OP.get(site.op_type, "other")
            arith = {k: c for k, c in count_op(site, _NO_TRAFFIC_HW, _NO_TRAFFIC_PLAN).items() if not is_memory(k)}
            pj = sum(price(arith, self.t.energy).values())
            energy[ARITH + component] += pj
            node_pj = pj
            stages = gemm_stages(site)
            acc, mapping = self._array(site)
            for stage in stages:
                m = self._map(_scaled(stage, b), acc, mapping)
                for level, row in m.levels.items():
                    cls = CLASS_OF_MEM[acc["memories"][level]["mem_type"]]
                    energy[cls] += row["pJ"] / b
                    node_pj += row["pJ"] / b
                cycles += m.cycles
                array_cycles += m.cycles * prod(acc["operational_array"]["sizes"]) / prod(self.main["operational_array"]["sizes"])
                macs += stage.mac_sites * b
            if not stages:
                traffic = self._vector_traffic(site, _EMBED_PLAN if site.op_type == "Embed" else plan)
                energy.update(traffic)
                node_pj += sum(traffic.values())
            if site.op_type in VECTOR_PASSES or not stages:
                vector_cycles += self._vector_elems(site) * b / s.vector_lanes
            if component == "attention":
                attention += node_pj
        total_cycles = cycles + vector_cycles
        latency_us = total_cycles / s.clock_mhz
        area = self.area(variant)
        energy["leakage"] += self.leakage_mw() * latency_us * 1e3 / b   # mW x us = nJ -> pJ x 1e3
        return CostResult(s.name, model, variant, seq_len, b, dict(energy), attention, total_cycles, latency_us,
                          macs / (array_cycles * prod(self.main["operational_array"]["sizes"])) if array_cycles else None,
                          area)

    @staticmethod
    def _vector_elems(site) -> float:
        if site.op_type in ("DotAttention", "InhibitorAttention"):
            batch, heads, n, _ = site.in_shapes[0]
            passes = VECTOR_PASSES[site.op_type] + (1 if site.attrs.get("center", 0) else 0)
            return passes * heads * n * site.in_shapes[1][2] / batch
        passes = VECTOR_PASSES.get(site.op_type, 1)
        return passes * prod(site.out_shapes[0]) / max(site.out_shapes[0][0], 1) if site.out_shapes[0] else 0

    def leakage_mw(self) -> float:
        total = 0.0
        for acc in filter(None, (self.main, self.attn)):
            for name, mem in acc["memories"].items():
                if mem["mem_type"] == "sram" and (acc is self.main or name not in self.main["memories"]):
                    total += self.t.memory.sram(int(mem["size"]) // 8, widest_port(mem)).leakage_mw
        return total

    def area(self, variant: str) -> dict[str, float]:
        um2 = self.t.area.um2
        out: Counter = Counter()
        for label, acc in (("array", self.main), ("attention unit", self.attn)):
            if acc is None:
                continue
            pes = prod(acc["operational_array"]["sizes"])
            for name, mem in acc["memories"].items():
                if acc is self.attn and name in self.main["memories"]:
                    continue   # shared with the main array
                per_pe = mem["mem_type"] in REG_KINDS and not mem["served_dimensions"]
                kind = "registers" if mem["mem_type"] in REG_KINDS else "memories"
                out[kind] += float(mem["area"]) * (pes if per_pe else 1)
            role = "adder" if acc is self.attn else ("mac" if self.attn is not None else "dual")
            out[f"{label} arithmetic"] += pes * units_area_mm2(pe_units(variant, role), um2)
        out["vector unit"] += self.s.vector_lanes * units_area_mm2(vector_lane_units(), um2)
        return dict(out)


_NO_TRAFFIC_HW = HwConfig()
_NO_TRAFFIC_PLAN = MemoryPlan("dram", 0)
_EMBED_PLAN = MemoryPlan("dram", 0)
"""The embedding tables stay in DRAM in every scenario (n rows gathered per inference)."""
"""Arithmetic is counted with any plan; its memory keys are dropped (data movement is the mapping's)."""
