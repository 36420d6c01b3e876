"""Width-true hardware: processing elements built for a model's operand widths, as data and rules.

An accelerator file describes its array at the width it states (`operational_array.input_precision`,
[8, 8] in the packaged files; partial sums at `FILE_ACC` bits). A scenario prices each model on an array
of the model's own widths, or of the width the scenario pins for its main array (`pe_bits`, or a name
suffix `edge@4`, `edge@8x4`; an attention unit always follows the model), by these rules:

- Array widths (`ArrayWidths`): input and weight operand widths = the widest `bits_i` and `bits_w` of the
  GEMM-shaped stages that run on the array (`hwsim.cost.stages`, the graph's declared widths); accumulator
  = the widest declared accumulator width of those nodes (`quant.ir.spec.acc_width`, what the export's
  width analysis assigns: 32 for today's W8A8 and W4A4 models), or the scenario's `acc_bits`. A pinned
  array runs only models of exactly its operand widths (`check_fits`): a narrower multiplier cannot form
  the product in one action, and the energy of a wider multiplier at narrower operands has no table row.
- Arithmetic energy stays hwsim's count of each product at its operands' widths. Where one array runs
  stages of different widths (W4A8: Linears 8x4, attention scores 8x8), its PEs carry the widest
  multiplier and a narrower product is priced at its own width: operand gating is assumed, optimistic for
  the narrower products by at most the ratio of the two table rows (2x for 8x4 against 8x8).
- Operand widths a PE may be built for: `PE_BITS` (4..16). Below 4 bits the tables' multiplier rows are
  proportional extrapolations from the 8x8 measurement (a 2x2 multiplier at 1/16 of it), not a figure to
  build an array on; above 16 the vector unit and the score datapaths of the op specs are not modelled.
  Accumulators up to `ACC_MAX` (64) bits: the energy and area tables and hwsim's counting stop there.
- Per-PE registers (`mem_type` reg or link, one per PE, costs not stated in the file) hold operands of the
  array's widths: sizes and port widths scale by (array width / file width) for I1 and I2, by
  (accumulator / `FILE_ACC`) for O, rounded up (`sized_accelerator`). Their energy stays per bit moved
  (`hwsim.cost.pricing`), their area per bit held. Buffers, DRAM and the vector unit are the file's: the
  vector unit computes LayerNorm, softmax and requantisation at their own internal widths (32-bit adders,
  a 16x16 multiplier) whatever the operand width.
- Same silicon area (`same_area_bits`): the array keeps the area of its PEs at `same_area_bits`-bit
  operands: area of one MAC PE = area table `mul@IxW` + `add@FILE_ACC` + its per-PE register bits x `reg@1`
  (`pe_area_um2`); PEs = floor(PEs_file x area_file / area_width), the array's first dimension (output
  columns, D1) shrunk or grown to the largest multiple of 8 that fits with the other dimensions kept
  (`same_area_sizes`), and the mapping's unrolling of D1 set to the new size (`sized_mapping`).
- Words in memory: a value of 8 bits or more occupies a 1/2/4/8-byte word (`quant.ir.spec.word_bytes`);
  a narrower value is packed bit-dense, bits/8 bytes (`packed_bytes`), as ZigZag counts every operand
  in its own bits.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import yaml

from hwsim.sim.actions import ActionKey
from models.errors import UserError
from quant.ir import spec

PE_BITS = range(4, 17)
ACC_MAX = 64
FILE_ACC = 32
"""Partial-sum width the packaged accelerator files size their O registers for (two 32-bit partial sums
in a 64-bit `o_reg`)."""
COLUMN_STEP = 8
_WIDTH = re.compile(r"(\d+)(?:x(\d+))?")


class WidthMismatch(UserError):
    """A model whose operand widths are not those of a pinned array (the scenario table skips the cell)."""


@dataclass(frozen=True)
class ArrayWidths:
    """Operand widths of a PE (input `i`, weight `w`) and its accumulator width `acc`, in bits."""

    i: int
    w: int
    acc: int

    @property
    def label(self) -> str:
        return f"{self.i}x{self.w}" + ("" if self.acc == FILE_ACC else f"a{self.acc}")


def parse_pe_bits(text: str, where: str) -> tuple[int, int]:
    """'4' -> (4, 4), '8x4' -> (8, 4) (input x weight); `UserError` otherwise or outside `PE_BITS`."""
    m = _WIDTH.fullmatch(text.strip())
    if not m:
        raise UserError(f"{where}: array width {text!r} is not N or IxW (e.g. edge@4, edge@8x4)")
    bits = (int(m[1]), int(m[2] or m[1]))
    check_pe_bits(bits, where)
    return bits


def split_name(name: str) -> tuple[str, str | None]:
    """'edge@4' -> ('edge', '4'), 'my.yaml@8x4' -> ('my.yaml', '8x4'); 'edge' -> ('edge', None)."""
    base, sep, width = str(name).rpartition("@")
    return (base, width) if sep and base and re.fullmatch(r"[\w.]+", width) else (str(name), None)


def check_pe_bits(bits: Iterable[int], where: str) -> None:
    """`UserError` naming the width and the way out unless every operand width lies in `PE_BITS`."""
    bad = [b for b in bits if b not in PE_BITS]
    if bad:
        raise UserError(f"{where}: a {bad[0]}-bit processing element is outside the widths hwsim builds arrays for "
                        f"({PE_BITS.start}..{PE_BITS.stop - 1} bits: below 4 the area and energy tables' multipliers "
                        f"are extrapolations from the 8x8 figure, not measurements); quantize to 4 bits or more "
                        f"and ask for e.g. edge@4")


def check_acc(acc: int, where: str, way_out: str = "narrow the operands or shorten the reduction") -> None:
    """`UserError` naming the width and `way_out` unless 1 <= acc <= `ACC_MAX`."""
    if not 1 <= acc <= ACC_MAX:
        raise UserError(f"{where}: a {acc}-bit accumulator is outside the 1..{ACC_MAX} bits the tables and hwsim's "
                        f"counting hold; {way_out}")


def file_bits(acc: Mapping) -> tuple[int, int]:
    """The operand widths an accelerator file states its array at (input_precision, default 8 x 8)."""
    i, w = acc["operational_array"].get("input_precision") or (8, 8)
    return int(i), int(w)


def array_widths(stages, declared_acc: Iterable[int], pinned: tuple[int, int] | None, acc_bits: int | None,
                 where: str) -> ArrayWidths | None:
    """The widths of the array that runs `stages` (module docstring), None when it runs none;
    `UserError` when the model's widths do not fit a pinned array or an accumulator."""
    stages = list(stages)
    if not stages:
        return None
    i, w = max(st.bits_i for st in stages), max(st.bits_w for st in stages)
    acc = acc_bits if acc_bits is not None else max(declared_acc)
    check_acc(acc, where)
    if pinned is not None and (i, w) != tuple(pinned):
        raise WidthMismatch(f"{where}: the model's GEMM operands are {i}x{w} bits (input x weight) but the array is "
                            f"built for {pinned[0]}x{pinned[1]}; cost it on an array of its widths (the scenario "
                            f"without @width, or @{i}x{w})")
    check_pe_bits((i, w), f"{where}: the model's GEMM operands")
    for st in stages:
        if st.bits_o > acc:
            raise UserError(f"{where}: node {st.node!r} ({st.kind}) needs a {st.bits_o}-bit accumulator, over the "
                            f"array's {acc}; raise the scenario's acc_bits (at most {ACC_MAX})")
    return ArrayWidths(i, w, acc)


def packed_bytes(bits: int) -> float:
    """Bytes one `bits`-bit value occupies in memory: bit-dense below 8 bits, else its word.

    >>> [packed_bytes(b) for b in (1, 4, 6, 8, 9, 32)]
    [0.125, 0.5, 0.75, 1, 2, 4]
    """
    return bits / 8 if bits < 8 else spec.word_bytes(bits)


def _register(mem: Mapping) -> bool:
    return (mem.get("mem_type") in ("reg", "link") and not mem["served_dimensions"]
            and any(mem.get(k) is None for k in ("r_cost", "w_cost", "area")))


def _factor(mem: Mapping, widths: ArrayWidths, base: tuple[int, int]) -> float:
    per = {"I1": widths.i / base[0], "I2": widths.w / base[1], "O": widths.acc / FILE_ACC}
    return max(per[op] for op in mem["operands"])


def sized_accelerator(acc: Mapping, widths: ArrayWidths) -> Mapping:
    """`acc` with its per-PE registers sized for `widths` (module docstring); `acc` itself when the
    widths are the file's, so the file's figures and mapping cache keys stay as they were."""
    base = file_bits(acc)
    if (widths.i, widths.w, widths.acc) == (*base, FILE_ACC):
        return acc
    out = copy.deepcopy(dict(acc))
    out["name"] = f"{acc['name']}@{widths.label}"
    out["operational_array"]["input_precision"] = [widths.i, widths.w]
    for mem in out["memories"].values():
        if not _register(mem):
            continue
        f = _factor(mem, widths, base)
        mem["size"] = math.ceil(int(mem["size"]) * f)
        for port in mem["ports"]:
            port["bandwidth_max"] = max(int(port["bandwidth_min"]), math.ceil(int(port["bandwidth_max"]) * f))
    return out


def pe_area_um2(acc: Mapping, widths: ArrayWidths, area_um2: Mapping[str, float]) -> float:
    """um^2 of one multiply-accumulate PE of `acc` at `widths`: multiplier, accumulator adder and its
    per-PE register bits (the same-area rule's measure)."""
    sized = sized_accelerator(acc, widths)
    units = [ActionKey.of("mul", max(widths.i, widths.w), min(widths.i, widths.w)).format(),
             ActionKey.of("add", widths.acc).format()]
    missing = [u for u in (*units, "reg@1") if u not in area_um2]
    if missing:
        raise UserError(f"the area table has no row for {', '.join(missing)}; add it (bench/make_area_table.py)")
    bits = sum(int(m["size"]) for m in sized["memories"].values() if _register(m))
    return sum(area_um2[u] for u in units) + bits * area_um2["reg@1"]


def same_area_sizes(acc: Mapping, bits: tuple[int, int], area_bits: tuple[int, int],
                    area_um2: Mapping[str, float]) -> list[int]:
    """Array sizes at `bits`-bit PEs that keep the PE area of `acc` built at `area_bits` (module docstring)."""
    sizes = [int(s) for s in acc["operational_array"]["sizes"]]
    a_base = pe_area_um2(acc, ArrayWidths(*area_bits, FILE_ACC), area_um2)
    a_new = pe_area_um2(acc, ArrayWidths(*bits, FILE_ACC), area_um2)
    pes = math.floor(math.prod(sizes) * a_base / a_new)
    rest = math.prod(sizes[1:])
    first = (pes // rest) // COLUMN_STEP * COLUMN_STEP
    if first < 1:
        raise UserError(f"accelerator {acc['name']!r}: {bits[0]}x{bits[1]}-bit PEs in the area of its "
                        f"{area_bits[0]}x{area_bits[1]}-bit array leave fewer than {COLUMN_STEP} columns; "
                        f"choose a narrower width or a larger array")
    return [first, *sizes[1:]]


def sized_mapping(mapping_path: str, old: list[int], new: list[int], dims: list[str], cache_root: Path) -> str:
    """`mapping_path` with each spatial unrolling that fills a dimension of the old array set to the new
    size, written into `cache_root`/mappings (the path itself when no size changed)."""
    if old == new:
        return mapping_path
    change = {d: (o, n) for d, o, n in zip(dims, old, new) if o != n}
    data = yaml.safe_load(Path(mapping_path).read_text(encoding="utf-8"))
    for entry in data:
        for d, unrolls in (entry.get("spatial_mapping") or {}).items():
            if d in change:
                entry["spatial_mapping"][d] = [f"{u.split(',')[0].strip()}, {change[d][1]}"
                                               if int(u.split(",")[1]) == change[d][0] else u for u in unrolls]
    from hwsim.cost.own import cached_mapping
    return str(cached_mapping(yaml.safe_dump(data, sort_keys=False), Path(mapping_path).stem, cache_root))
