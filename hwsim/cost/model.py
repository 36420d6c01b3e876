"""The cost of one inference of an exported model on one scenario: energy by where it is spent,
cycles, latency, PE utilisation and area. Every figure is a model estimate, not a measurement.

How a mapped scenario is costed (each rule applied to every node of the graph; what a node's op
runs where is the op spec's, `quant.ir.spec.OpSpec`: its GEMM stages and their arithmetic, its vector
passes, the inputs it reads whole, whether its params are tables):
1. Schedule and residency: `hwsim.cost.schedule` (row tiles of 128 rows, row groups of the batch,
   segments cut at attention, attention per head and query tile, spills decided per tensor by the
   buffer's peak occupancy under that schedule).
2. Arithmetic: hwsim's exact per-width action counts of every node (`hwsim.sim.counting`), priced with
   the energy table by `hwsim.cost.energy.price_by_component` (which names the node's component).
3. GEMM-shaped stages (`hwsim.cost.stages`: Linear, attention scores and mixing) are mapped by ZigZag
   one tile at a time on the scenario's array (a node whose stages need no multiplier, the inhibitor's,
   on the attention unit when the scenario has one): a Linear tile is up to 128 rows of its row group
   with the whole weight matrix, an attention tile one head x up to 128 query rows against all keys.
   Each distinct tile is mapped once and multiplied by how often the schedule runs it. A tile's operands
   start and end at their tensors' homes (the activations home, or DRAM when spilled; the score tile
   between the two attention stages stays in the buffer; weights at `weights_home`, fetched once per
   tile; a key or value tensor that the schedule spilled is staged one head at a time: read from DRAM
   once into the buffer, where every query tile of the head reads it). Data movement is ZigZag's
   accesses per memory level x the level's cost, classed by `mem_type`: dram, buffer (sram), register
   (reg), link (PE-to-PE operand registers). Partial sums are held at the width the accumulator provably
   needs (`hwsim.cost.stages.proven_acc_bits`, with the real weights).
4. Everything else runs on the vector unit (LayerNorm, residual Add, embedding, ScaleChannels, and
   inside attention the softmax or centring/clamp between the two stages): it reads each input and
   writes each output once at the tensor's home (params at `weights_home`, lookup tables, the
   embedding's, in DRAM: n rows gathered per inference); the row-wise steps inside attention work on the
   score stream and add no traffic. Head split/merge permutations and views are address patterns: no
   traffic, no cycles. Vector cycles: elements / `vector_lanes` per pass (`quant.ir.spec.vector_passes`:
   over the score matrix for attention, else over the output; a Linear makes none).
5. Latency: per tile, ZigZag's cycles (computation and memory stalls) plus each weight fold's fill and
   drain as SCALE-Sim charges them (`hwsim.cost.latency`), plus vector cycles, in sequence (no overlap
   between the array and the vector unit), at `clock_mhz`; ZigZag's ideal cycles (no stalls, no
   fill or drain) are reported beside as the bound. Utilisation: multiply-accumulate sites /
   (array cycles x PEs).
6. Batch B: energy is reported per inference (the batch's energy / B), latency per batch.
7. Area: memories (sram from the table; per-PE registers x PEs), PE arithmetic units
   (`hwsim.cost.pricing.pe_units` of the arithmetic the array runs: every arithmetic of the model's
   stages on a shared array; those that multiply when an attention unit takes the others) x PEs, the
   attention unit's (every arithmetic without a multiplier), and the vector unit's lanes.
8. Leakage: the memory table's SRAM standby leakage (low-standby-power cells) x latency per
   inference, **included** in the total and shown apart.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from math import prod
from typing import Callable, Mapping

import numpy as np

from hwsim.sim.actions import ActionKey
from hwsim.cost.latency import spatial_unrolling, stage_latency
from hwsim.cost.own import stated
from hwsim.cost.pricing import (REG_KINDS, multiplies, pe_units, resolve_accelerator, units_area_mm2,
                                vector_lane_units, widest_port)
from hwsim.cost.scenario import OPERAND_OF, Scenario, dram_level, homes_accelerator
from hwsim.cost.schedule import Flow, Schedule, flow_of, plan_schedule, tiles_of
from hwsim.cost.stages import GemmStage, gemm_stages, magnitude, proven_acc_bits, stage_kinds
from hwsim.cost.widths import FILE_ACC, ArrayWidths, array_widths, file_bits, packed_bytes, sized_accelerator
from hwsim.cost.zigzag_map import MappedStage, map_stage
from hwsim.sim.counting import count_op
from hwsim.cost.energy import price_by_component
from hwsim.sim.hwconfig import HwConfig
from hwsim.sim.memory import MemoryPlan, read_elems
from quant.ir import spec

ENERGY_CLASSES = ("dram", "buffer", "register", "link", "leakage")
ARITH = "arith."
CLASS_OF_MEM = {"dram": "dram", "sram": "buffer", "reg": "register", "link": "link"}
MapFn = Callable[[GemmStage, dict, str, int], MappedStage]


@dataclass(frozen=True)
class Tables:
    """The data a mapped cost reads: energy pJ per action, memory table, area um^2 per unit."""

    energy: object
    memory: object
    area: object


@dataclass(frozen=True)
class Workload:
    """A model at one sequence length, batch 1: its op sites, the schedule's view of its tensors and
    the proven accumulator widths of its GEMM-shaped nodes (node -> stage kind -> bits)."""

    n: int
    sites: tuple
    flow: Flow
    acc_bits: Mapping[str, Mapping[str, int]]


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
    ideal_latency_us: float | None = None    # per batch: ZigZag's bound (no stalls, no fill or drain)
    dram_bytes: Mapping[str, float] = field(default_factory=dict)   # per inference: weights, activations
    group: int = 1                           # samples per row group (schedule rule 2)
    spilled: tuple = ()                      # tensors the schedule sends to DRAM

    @property
    def total_pj(self) -> float:
        """Energy per inference, leakage included."""
        return sum(self.energy_pj.values())

    @property
    def arithmetic_by_component(self) -> dict[str, float]:
        """Arithmetic energy per inference by component (the `arith.<component>` classes)."""
        return {k[len(ARITH):]: v for k, v in self.energy_pj.items() if k.startswith(ARITH)}

    @property
    def arithmetic_pj(self) -> float:
        return sum(self.arithmetic_by_component.values())

    @property
    def dynamic_pj(self) -> float:
        return self.total_pj - self.energy_pj.get("leakage", 0.0)

    @property
    def area_total_mm2(self) -> float | None:
        return sum(self.area_mm2.values()) if self.area_mm2 else None


def _linear_weight_bound(plan, site, ins: tuple[str, ...], mags: tuple[int, ...]) -> int | None:
    """max over output columns of max|x| x sum_c |W[c, k]| + |b[k]| (the real weights), or None."""
    if not site.in_is_param[1]:
        return None
    w = np.abs(np.asarray(plan.params[ins[1]], dtype=np.int64)).sum(axis=0)
    b = np.abs(np.asarray(plan.params[ins[2]], dtype=np.int64)) if len(ins) > 2 and site.in_is_param[2] else 0
    return int(np.max(mags[0] * w + b))


def workload_at(plan, seq_len: int) -> Workload:
    """`plan` at one sequence length (batch 1), from one run on constant ids."""
    from hwsim.sim.executor import execute, op_site

    ids = np.full((1, seq_len), 1000 % int(plan.meta.get("vocab_size", 1001)), dtype=np.int64)
    res = execute(plan, ids, np.ones_like(ids), overflow="saturate", count=False, track_widths=False)
    sites, names, acc = [], [], {}
    for node in plan.nodes:
        site = op_site(plan, node, res.shapes)
        ins = tuple(t for t in node.inputs if t)
        sites.append(site)
        names.append((ins, tuple(node.outputs)))
        kinds = stage_kinds(site.op_type)
        if kinds:
            mags = tuple(magnitude(b, plan.formats[t].signed if t in plan.formats else True)
                         for t, b in zip(ins, site.in_bits))
            acc[site.name] = proven_acc_bits(site, mags, _linear_weight_bound(plan, site, ins, mags)
                                             if "linear" in kinds else None)
    return Workload(seq_len, tuple(sites), flow_of(sites, names, seq_len), acc)


def tile_counts(stage: GemmStage, group: int) -> list[tuple[GemmStage, float]]:
    """(tile, times per inference) of a batch-1 stage under the schedule (`hwsim.cost.schedule`):
    a Linear's rows of a row group of `group` samples in 128-row tiles; attention per head and query tile."""
    if stage.kind == "linear":
        rows = Counter(tiles_of(stage.rows * group))
        return [(replace(stage, rows=r), c / group) for r, c in sorted(rows.items())]
    rows = Counter(tiles_of(stage.rows))
    return [(replace(stage, groups=1, rows=r), c * stage.groups) for r, c in sorted(rows.items())]


def tile_homes(stage: GemmStage, scenario: Scenario, acc: Mapping, home_of: Callable[[str | None], str],
               reads: tuple[str, ...] = (), writes: tuple[str, ...] = ()) -> dict[str, str]:
    """Memory operand -> home level of one tile: activations at their tensors' homes (`home_of`), the
    score tile between the attention stages in the activations home, weights at `weights_home`."""
    on_chip = scenario.activations_home
    tensor = lambda i, seq: seq[i] if len(seq) > i else None  # noqa: E731
    if stage.kind == "linear":
        homes = {"I": home_of(tensor(0, reads)), "O": home_of(tensor(0, writes)),
                 "W": scenario.weights_home if stage.w_param else home_of(tensor(1, reads))}
    elif stage.kind == "scores":
        homes = {"I": home_of(tensor(0, reads)), "W": home_of(tensor(1, reads)), "O": on_chip}
    else:
        homes = {"I": on_chip, "W": home_of(tensor(2, reads)), "O": home_of(tensor(0, writes))}
    return {OPERAND_OF[op]: level for op, level in homes.items()}


class MappedCost:
    """Costs models on one mapped scenario; `map_fn` maps a tile (default: ZigZag with its disk cache)."""

    def __init__(self, scenario: Scenario, tables: Tables, map_fn: MapFn = map_stage,
                 schedules: dict | None = None) -> None:
        self.s, self.t, self.map_fn = scenario, tables, map_fn
        self._schedules = {} if schedules is None else schedules   # may be shared between scenarios
        self._mapped: dict[tuple, MappedStage] = {}
        self._sized: dict[tuple, dict] = {}
        self.main = resolve_accelerator(scenario.accelerator, scenario, tables.memory, tables.energy.pj, tables.area.um2)
        self.attn = (resolve_accelerator(scenario.attention_accelerator, scenario, tables.memory, tables.energy.pj,
                                         tables.area.um2) if scenario.attention_accelerator else None)
        self.unroll = {scenario.mapping: spatial_unrolling(scenario.mapping)}
        if scenario.attention_mapping:
            self.unroll[scenario.attention_mapping] = spatial_unrolling(scenario.attention_mapping)
        self.dram = dram_level(self.main)
        gb = self.main["memories"][scenario.activations_home]
        home = self.main["memories"][scenario.weights_home]
        dram = self.main["memories"][self.dram]
        self.budget = int(gb["size"]) // 8
        self.word = {scenario.activations_home: widest_port(gb), self.dram: widest_port(dram),
                     scenario.weights_home: widest_port(home)}
        self.word_pj = {(name, d): mem[f"{d}_cost"] for name, mem in
                        ((scenario.activations_home, gb), (self.dram, dram), (scenario.weights_home, home))
                        for d in ("r", "w")}

    def _on_attention_unit(self, op: str) -> bool:
        """Whether `op`'s stages run on the scenario's attention unit: it has one, and none of the
        stages needs a multiplier."""
        stages = spec.op_spec(op).stages
        return self.attn is not None and bool(stages) and not any(multiplies(st.arith) for st in stages)

    def _array(self, site, arrays: Mapping[str, dict]) -> tuple[dict, str]:
        if self._on_attention_unit(site.op_type):
            return arrays["attention unit"], self.s.attention_mapping
        return arrays["array"], self.s.mapping

    def widths(self, work: Workload) -> dict[str, ArrayWidths | None]:
        """The widths of each array ("array", "attention unit") for `work` (`hwsim.cost.widths`: the
        widest operands of the stages it runs, the declared accumulator, or the scenario's pinned
        widths); None for an array that runs no stage of `work`."""
        out = {}
        for label, on_unit in (("array", False), ("attention unit", True)):
            sites = [site for site in work.sites if stage_kinds(site.op_type)
                     and self._on_attention_unit(site.op_type) == on_unit]
            stages = [st for site in sites for st in gemm_stages(site, work.acc_bits.get(site.name))]
            pinned = self.s.pe_bits if label == "array" else None
            out[label] = array_widths(stages, [spec.acc_width(site.op_type, site.attrs) for site in sites], pinned,
                                      self.s.acc_bits, f"scenario {self.s.name!r}: {label}")
        return out

    def arrays(self, work: Workload) -> dict[str, dict | None]:
        """The resolved accelerators ("array", "attention unit") with per-PE registers sized for
        `work`'s widths (`hwsim.cost.widths.sized_accelerator`), each resolved once per width."""
        out = {}
        for (label, widths), base, raw in zip(self.widths(work).items(), (self.main, self.attn),
                                              (self.s.accelerator, self.s.attention_accelerator)):
            if base is None or widths is None or sized_accelerator(raw, widths) is raw:
                out[label] = base
                continue
            if (label, widths) not in self._sized:
                sized = sized_accelerator(raw, widths)
                self._sized[(label, widths)] = resolve_accelerator(sized, self.s, self.t.memory, self.t.energy.pj,
                                                                   self.t.area.um2)
            out[label] = self._sized[(label, widths)]
        return out

    def map_tile(self, tile: GemmStage, acc: dict, mapping: str, homes: dict[str, str]) -> MappedStage:
        key = (tile.shape_key(), tuple(sorted(homes.items())), acc["name"], mapping)
        if key not in self._mapped:    # the layers of an encoder repeat the same tiles
            homed = homes_accelerator(acc, homes)
            self._mapped[key] = self.map_fn(tile, homed, mapping, prod(acc["operational_array"]["sizes"]))
        return self._mapped[key]

    def _level(self, sched: Schedule) -> Callable[[str | None], str]:
        return lambda t: self.dram if t is not None and sched.home(t) == "dram" else self.s.activations_home

    def _vector_traffic(self, site, reads: tuple[str, ...], writes: tuple[str, ...], sched: Schedule) -> Counter:
        """Rule 4: each input read and each output written once at its home, pJ per inference by class."""
        level = self._level(sched)
        out: Counter = Counter()
        acts = iter(reads)
        for elems, bits, is_param in zip(read_elems(site), site.in_bits, site.in_is_param):
            if elems is None:
                continue
            if is_param:
                tables = spec.op_spec(site.op_type).table_params
                where = self.dram if tables else self.s.weights_home
                per = 1 if tables else sched.group   # small params: once per row group
                self._word_access(out, where, "r", elems * packed_bytes(bits) / per)
            else:
                self._word_access(out, level(next(acts)), "r", elems * packed_bytes(bits))
        for t, shape, bits in zip(writes, site.out_shapes, site.out_bits):
            self._word_access(out, level(t), "w", prod(shape) * packed_bytes(bits))
        return out

    def _word_access(self, out: Counter, level: str, direction: str, nbytes: float) -> None:
        words = -(-int(round(nbytes)) * 8 // self.word[level])
        cls = CLASS_OF_MEM[self.main["memories"][level]["mem_type"]]
        out[cls] += words * self.word_pj[(level, direction)]

    def schedule(self, work: Workload) -> Schedule:
        """The schedule of `work` on this scenario (`hwsim.cost.schedule`), computed once per
        (workload, batch, buffer, weights in DRAM)."""
        key = (id(work.flow), self.s.batch, self.budget, self.s.weights_home == self.dram)
        if key not in self._schedules:
            self._schedules[key] = (work.flow, plan_schedule(work.flow, *key[1:]))
        return self._schedules[key][1]

    def cost(self, work: Workload, model: str, variant: str, seq_len: int) -> CostResult:
        b, s = self.s.batch, self.s
        sched = self.schedule(work)
        level = self._level(sched)
        arrays = self.arrays(work)
        flow = {fn.name: fn for fn in work.flow.nodes}
        pes_main = prod(self.main["operational_array"]["sizes"])
        energy: Counter = Counter()
        dram_bytes: Counter = Counter()
        attention = cycles = ideal = vector_cycles = macs = array_cycles = 0.0
        sites = [site for site in work.sites if spec.moves(site.op_type) not in ("view", "permute")]
        arithmetic = price_by_component({site.name: _arithmetic_counts(site) for site in sites},
                                        {site.name: site.op_type for site in sites}, self.t.energy)
        for site in sites:
            fn = flow[site.name]
            component = arithmetic[site.name].component
            node_pj = arithmetic[site.name].total_pj
            energy[ARITH + component] += node_pj
            acc, mapping = self._array(site, arrays)
            stages = gemm_stages(site, work.acc_bits.get(site.name))
            for stage in stages:
                homes = tile_homes(stage, s, acc, level, fn.reads, fn.writes)
                if stage.kind != "linear" and homes[OPERAND_OF["W"]] == self.dram:
                    # a spilled key or value tensor is staged one head at a time: read from DRAM once,
                    # written to the buffer, and read from there by every query tile of the head
                    homes[OPERAND_OF["W"]] = s.activations_home
                    staged = stage.groups * stage.reduce * stage.cols * packed_bytes(stage.bits_w)
                    moved: Counter = Counter()
                    self._word_access(moved, self.dram, "r", staged)
                    self._word_access(moved, s.activations_home, "w", staged)
                    energy.update(moved)
                    node_pj += sum(moved.values())
                    dram_bytes["activations"] += staged
                for tile, per_inf in tile_counts(stage, sched.group):
                    m = self.map_tile(tile, acc, mapping, homes)
                    for lvl, row in m.levels.items():
                        pj = row["pJ"] * per_inf
                        energy[CLASS_OF_MEM[acc["memories"][lvl]["mem_type"]]] += pj
                        node_pj += pj
                    for op, rows in m.by_operand.items():
                        if self.dram in rows:
                            moved = (rows[self.dram]["read"] + rows[self.dram]["write"]) * self.word[self.dram] / 8
                            dram_bytes["weights" if op == "W" and stage.w_param else "activations"] += moved * per_inf
                    c, i = stage_latency(m, tile, self.unroll[mapping])
                    cycles += c * per_inf * b
                    ideal += i * per_inf * b
                    array_cycles += c * per_inf * b * prod(acc["operational_array"]["sizes"]) / pes_main
                    macs += tile.mac_sites * per_inf * b
            if not stages:
                traffic = self._vector_traffic(site, fn.reads, fn.writes, sched)
                energy.update(traffic)
                node_pj += sum(traffic.values())
                for t in (*fn.reads, *fn.writes):
                    if sched.home(t) == "dram":
                        dram_bytes["activations"] += work.flow.row_bytes.get(t, 0.0) * seq_len
            if spec.vector_passes(site.op_type, site.attrs):
                vector_cycles += self._vector_elems(site) * b / s.vector_lanes
            if component == "attention":
                attention += node_pj
        total_cycles = cycles + vector_cycles
        latency_us = total_cycles / s.clock_mhz
        energy["leakage"] += self.leakage_mw() * latency_us * 1e3 / b   # mW x us = nJ -> pJ x 1e3
        return CostResult(s.name, model, variant, seq_len, b, dict(energy), attention, total_cycles, latency_us,
                          macs / (array_cycles * pes_main) if array_cycles else None, self.area(work, arrays),
                          (ideal + vector_cycles) / s.clock_mhz, dict(dram_bytes), sched.group,
                          tuple(sorted(sched.spilled)))

    @staticmethod
    def _vector_elems(site) -> float:
        """Elements the vector unit walks for one node (`quant.ir.spec.vector_passes` passes): over
        the score matrix of an op that has one, else over its output, per sample."""
        passes = spec.vector_passes(site.op_type, site.attrs)
        if spec.op_spec(site.op_type).score_bits_attr:
            batch, heads, n, _ = site.in_shapes[0]
            return passes * heads * n * site.in_shapes[1][2] / batch
        return passes * prod(site.out_shapes[0]) / max(site.out_shapes[0][0], 1) if site.out_shapes[0] else 0

    def leakage_mw(self) -> float:
        """Standby leakage of the SRAMs priced from the memory table (a memory whose costs the
        accelerator file states carries no leakage figure and is left out; shared levels count once)."""
        stated_names = {name for acc in filter(None, (self.s.accelerator, self.s.attention_accelerator))
                        for name, mem in acc["memories"].items() if stated(mem)}
        total = 0.0
        for acc in filter(None, (self.main, self.attn)):
            for name, mem in acc["memories"].items():
                shared = acc is not self.main and name in self.main["memories"]
                if mem["mem_type"] == "sram" and name not in stated_names and not shared:
                    total += self.t.memory.sram(int(mem["size"]) // 8, widest_port(mem)).leakage_mw
        return total

    def area(self, work: Workload, arrays: Mapping[str, dict] | None = None) -> dict[str, float]:
        """Area by part (rule 7): the main array's PEs carry the arithmetic of `work`'s stages that
        runs on it, the attention unit's every arithmetic that needs no multiplier, each at its
        widths for `work` (`widths`; the file's where it runs none); registers as `arrays` size them."""
        um2 = self.t.area.um2
        arrays = arrays or self.arrays(work)
        widths = self.widths(work)
        used = {st.arith for site in work.sites for st in spec.op_spec(site.op_type).stages
                if not self._on_attention_unit(site.op_type)}
        main_arith = [a for a in spec.ARITHMETIC if a in used]
        adder_arith = [a for a in spec.ARITHMETIC if not multiplies(a)]
        out: Counter = Counter()
        for label, base in (("array", self.main), ("attention unit", self.attn)):
            if base is None:
                continue
            acc = arrays[label]
            w = widths[label] or ArrayWidths(*file_bits(acc), FILE_ACC)
            pes = prod(acc["operational_array"]["sizes"])
            for name, mem in acc["memories"].items():
                if label == "attention unit" and name in self.main["memories"]:
                    continue   # shared with the main array
                per_pe = mem["mem_type"] in REG_KINDS and not mem["served_dimensions"]
                kind = "registers" if mem["mem_type"] in REG_KINDS else "memories"
                out[kind] += float(mem["area"]) * (pes if per_pe else 1)
            arith = adder_arith if label == "attention unit" else main_arith
            out[f"{label} arithmetic"] += pes * units_area_mm2(pe_units(arith, (w.i, w.w), w.acc), um2)
        out["vector unit"] += self.s.vector_lanes * units_area_mm2(vector_lane_units(), um2)
        return dict(out)


_NO_TRAFFIC_HW = HwConfig()
_NO_TRAFFIC_PLAN = MemoryPlan("dram", 0)
"""Arithmetic is counted with any plan; its memory keys are dropped (data movement is the mapping's)."""


def _arithmetic_counts(site) -> dict[str, int]:
    """The node's counts without memory accesses (rule 2)."""
    return {k: c for k, c in count_op(site, _NO_TRAFFIC_HW, _NO_TRAFFIC_PLAN).items()
            if not ActionKey.parse(k).is_memory}
