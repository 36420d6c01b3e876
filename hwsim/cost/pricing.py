"""Price a scenario's memories and processing elements from hwsim's tables (data, not code).

Memories whose accelerator entry leaves `r_cost`/`w_cost`/`area` out are priced by `mem_type`, at
the width of their widest port (ZigZag counts accesses in units of that width):
- `sram`: the memory table's SRAM row for (size, width) (CACTI, `hwsim/cost/data/memory45.csv`);
- `dram`: the memory table's pJ per bit for the scenario's `dram_kind`, times the width; no area;
- `reg` and `link` (per-PE operand registers; `link` = a register an operand passes through on its way
  from one PE to the next): a write costs the energy table's flip-flop bit (`regwrite@1`, a cited
  figure) per bit of the port; a read costs nothing (it is the register's output wires). ZigZag counts
  register traffic in the operand's own bits when the ports' `bandwidth_min` is 1 (the packaged
  files), so partial sums are charged at the width the accumulator provably needs; area = bits x the
  area table's register bit (`reg@1`).
A processing element's arithmetic area is the area table's units of what it must compute at the
array's operand and accumulator widths (`pe_units`, `hwsim.cost.widths`): the units of every
arithmetic (`quant.ir.spec.ARITHMETIC`, `UNITS_OF`) of the stages it runs, so the inhibitor's PEs carry subtract/absolute/ReLU units next to (dual-mode) or instead of
(separate attention unit) the multiplier.
"""
from __future__ import annotations

import copy
from typing import Callable, Iterable, Mapping

from hwsim.sim.actions import ActionKey
from hwsim.cost.own import stated
from hwsim.cost.scenario import Scenario
from models.errors import UserError

REG_KINDS = ("reg", "link")


def widest_port(mem: Mapping) -> int:
    return max(int(p["bandwidth_max"]) for p in mem["ports"])


REGISTER_WRITE = ActionKey.of("regwrite", 1).format()   # energy table: pJ per flip-flop bit written
REGISTER_BIT = ActionKey.of("reg", 1).format()          # area table: um^2 per register bit


def register_write_pj_per_bit(energy_pj: Mapping[str, float]) -> float:
    """pJ per flip-flop bit written (the energy table's `regwrite@1`)."""
    if REGISTER_WRITE not in energy_pj:
        raise UserError(f"the energy table has no {REGISTER_WRITE} row (pJ per flip-flop bit written); add one with "
                        f"its source (see hwsim/cost/data/horowitz45.csv) to price registers and links")
    return energy_pj[REGISTER_WRITE]


def price_memory(mem: Mapping, scenario: Scenario, memtable, energy_pj: Mapping[str, float],
                 area_um2: Mapping[str, float]) -> tuple[float, float, float]:
    """(r_cost pJ, w_cost pJ, area mm^2) of one accelerator memory; as stated where the file states
    all three (ZigZag's own example files do; `mem_type` is then not needed to price it)."""
    if stated(mem):
        return float(mem["r_cost"]), float(mem["w_cost"]), float(mem["area"])
    width = widest_port(mem)
    kind = mem["mem_type"]
    if kind == "dram":
        pj = memtable.dram_pj_per_bit(scenario.dram_kind) * width
        return pj, pj, 0.0
    if kind == "sram":
        cost = memtable.sram(int(mem["size"]) // 8, width)
        return cost.read_pj, cost.write_pj, cost.area_mm2
    return 0.0, register_write_pj_per_bit(energy_pj) * width, int(mem["size"]) * area_um2[REGISTER_BIT] / 1e6


def resolve_accelerator(acc: Mapping, scenario: Scenario, memtable, energy_pj, area_um2) -> dict:
    """A copy of `acc` with every missing r_cost/w_cost/area filled in and ZigZag's own MAC
    energy set to 0 (hwsim prices the arithmetic from its counts); `mem_type` link is written as reg
    would be (ZigZag ignores the field)."""
    out = copy.deepcopy(dict(acc))
    for mem in out["memories"].values():
        r, w, area = price_memory(mem, scenario, memtable, energy_pj, area_um2)
        for key, value in (("r_cost", r), ("w_cost", w), ("area", area)):
            if mem.get(key) is None:
                mem[key] = float(value)
    out["operational_array"]["unit_energy"] = 0.0
    return out


UNITS_OF: Mapping[str, Callable[[int, int, int], list[str]]] = {
    "mac": lambda i, w, acc: _keys(("mul", max(i, w), min(i, w)), ("add", acc)),
    "l1": lambda i, w, acc: _keys(("add", max(i, w) + 1), ("abs", max(i, w) + 1), ("add", acc)),   # |q - k|, sum
    "inhibit": lambda i, w, acc: _keys(("add", max(i, w) + 1), ("add", acc), ("cmp", acc)),      # v - z, sum, ReLU
}
"""Arithmetic of a stage (`quant.ir.spec.ARITHMETIC`) -> the area-table units a processing element
needs for it, at `i`-bit inputs, `w`-bit weights (the array's widths, `hwsim.cost.widths`) and an
`acc`-bit accumulator."""


def multiplies(arith: str) -> bool:
    """Whether arithmetic `arith` needs a multiplier (else it runs on an adder/ReLU attention unit)."""
    return any(ActionKey.parse(unit).action == "mul" for unit in UNITS_OF[arith](8, 8, 32))


def pe_units(arith: Iterable[str], bits: tuple[int, int] = (8, 8), acc: int = 32) -> list[str]:
    """Area-table keys of one processing element with `bits` = (input, weight) operand widths that
    performs every arithmetic of `arith`: the units of each in turn, a unit already there shared (one
    accumulator adder, one subtractor for the inhibitor's two stages).

    >>> pe_units(["mac"]), pe_units(["mac", "l1", "inhibit"])
    (['mul@8x8', 'add@32'], ['mul@8x8', 'add@32', 'add@9', 'abs@9', 'cmp@32'])
    >>> pe_units(["mac", "l1"], (4, 4), 32)
    ['mul@4x4', 'add@32', 'add@5', 'abs@5']
    """
    units: list[str] = []
    for a in arith:
        units += [u for u in UNITS_OF[a](*bits, acc) if u not in units]
    return units


def vector_lane_units(acc: int = 32) -> list[str]:
    """One lane of the vector unit (LayerNorm, softmax, requantisation, residual adds): a 32-bit
    adder, a 16x16 multiplier, a comparator and a shifter."""
    return _keys(("add", acc), ("mul", 16, 16), ("cmp", acc), ("add", acc))


def _keys(*units: tuple) -> list[str]:
    """Area-table keys of (action, *operand bits) units."""
    return [ActionKey.of(*unit).format() for unit in units]


def units_area_mm2(units: list[str], area_um2: Mapping[str, float]) -> float:
    return sum(area_um2[u] for u in units) / 1e6
