"""Scenarios: an accelerator, its mapping and how a model is served on it, as data files.

A scenario is a small YAML file (`hwsim/cost/scenarios/*.yaml`, or any file a user passes):

    name: edge                      # what reports call it
    source: ...                     # where its figures come from (printed with every table)
    kind: mapped                    # mapped (ZigZag) | counts (hwsim's own memory rules, no mapping)
    accelerator: accelerators/edge32.yaml   # ZigZag accelerator file, relative to this file
    mapping: mappings/ws32.yaml             # ZigZag mapping file (spatial unrolling, operand links)
    attention_accelerator: null     # optional: a second array that runs the inhibitor's attention
    attention_mapping: null         #   stages (an adder/ReLU unit), with its mapping
    clock_mhz: 500                  # latency = cycles / clock
    batch: 1                        # samples served together (weights amortised over them)
    dram_kind: DDR3                 # a DRAM row of the memory table
    weights_home: dram              # the memory level the weights live in between inferences
    activations_home: gb            # the level activations live in while they fit (else DRAM)
    vector_lanes: 32                # elements per cycle of the vector unit (row-wise ops)
    hw_config: null                 # kind counts: a hwsim HwConfig JSON (null = the packaged one)
    pe_bits: null                   # the PEs' operand widths: N or [input, weight]; null = each model's own
    same_area_bits: null            # keep the PE array's area at this width (more or fewer PEs); needs pe_bits
    acc_bits: null                  # the PEs' accumulator width (<= 64); null = the model's declared width

A name or path may end in `@N` or `@IxW` (`edge@4`, `my.yaml@8x4`): the scenario with `pe_bits` set to that
width, so one file is a family of arrays (`hwsim.cost.widths`: the width rules and their sources).

Every field is checked for type and range when the file is read (`hwsim.cost.validate`: scenario,
accelerator and mapping fields as tables); a wrong one is a `UserError` naming the file and field.
`weights_home` and `activations_home` may be left out (then: the DRAM level, and the outermost on-chip
memory holding I1 and O).

Accelerator files are ZigZag's format (memories innermost first, sizes in bits). `mem_type` (`reg`,
`link` (a PE-to-PE operand register), `sram` or `dram`) tells hwsim how to price a memory that leaves
`r_cost`/`w_cost`/`area` out (`hwsim.cost.pricing`, from hwsim's tables); a memory that states all three
is priced as stated and needs no `mem_type`, so ZigZag's own example files work as they are
(`hwsim.cost.own`: what is inferred, and how ZigZag's convolution mappings are read). The resolved file
is what ZigZag runs, and `resolved_accelerator` writes it out so ZigZag can be run on it standalone.
Each operand's home is the top of its hierarchy for one stage: `homes_accelerator` removes the
operand from every memory above its home, so ZigZag starts and ends the operand there.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from hwsim.cost.own import default_homes, gemm_mapping, stated_note, typed_accelerator
from hwsim.cost.validate import SCENARIO, check_accelerator, check_fields, check_mapping
from hwsim.cost.widths import (ACC_MAX, check_acc, check_pe_bits, parse_pe_bits, same_area_sizes, sized_mapping,
                               split_name)
from models.errors import UserError

PACKAGED = Path(__file__).resolve().with_name("scenarios")
OPERAND_OF = {"I": "I1", "W": "I2", "O": "O"}
"""Workload operand -> the accelerator's memory operand (the mapping files link them the same way)."""


@dataclass(frozen=True)
class Scenario:
    """One accelerator scenario (see the module docstring for the fields)."""

    name: str
    source: str
    path: str
    kind: str = "mapped"
    accelerator: dict | None = None
    mapping: str | None = None
    attention_accelerator: dict | None = None
    attention_mapping: str | None = None
    clock_mhz: float = 500.0
    batch: int = 1
    dram_kind: str = "DDR3"
    weights_home: str = ""
    activations_home: str = ""
    vector_lanes: int = 32
    hw_config: str | None = None
    pe_bits: tuple[int, int] | None = None
    same_area_bits: tuple[int, int] | None = None
    acc_bits: int | None = None


def packaged_names() -> list[str]:
    """The packaged scenarios costed by default: those whose PEs follow each model's widths."""
    return [name for name, pinned in _packaged() if not pinned]


def pinned_names() -> list[str]:
    """The packaged scenarios pinned to one width (`pe_bits`), costed when named (e.g. edge_same_area@4)."""
    return [name for name, pinned in _packaged() if pinned]


def _packaged() -> list[tuple[str, bool]]:
    out = []
    for path in sorted(PACKAGED.glob("*.yaml")):
        data = _read(path)
        out.append((path.stem, isinstance(data, dict) and data.get("pe_bits") is not None))
    return out


def _read(path: str | Path, what: str = "") -> Any:
    prefix = f"{what}: " if what else ""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError):
        raise UserError(f"{prefix}{path} not found; give the path relative to the scenario file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserError(f"{prefix}{path} is not valid YAML: {err}") from None


def _locate(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise UserError(f"scenario file {path} not found; pass an existing YAML file or one of the "
                            f"packaged scenarios {packaged_names() + pinned_names()}")
        return path
    packaged = PACKAGED / f"{name_or_path}.yaml"
    if not packaged.exists():
        raise UserError(f"unknown scenario {str(name_or_path)!r}: use one of {packaged_names() + pinned_names()} "
                        f"or the path of a scenario YAML file")
    return packaged


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A packaged scenario by name, or a scenario file; `UserError` names what is wrong and where."""
    from hwsim.cost.zigzag_map import cache_dir

    base_name, width = split_name(str(name_or_path))
    path = _locate(base_name)
    where = f"scenario {path}"
    data = _read(path)
    check_fields(data, SCENARIO, where)
    data = {k: v for k, v in data.items() if v is not None}
    data.update(_widths(data, width, where))
    base = path.parent
    resolved = dict(data, path=str(path))
    notes = []
    for key, map_key in (("accelerator", "mapping"), ("attention_accelerator", "attention_mapping")):
        if key not in data:
            continue
        acc_path = base / data[key]
        at = f"{where}: {key} {acc_path}"
        acc = _read(acc_path, f"{where}: {key}")
        check_accelerator(acc, at)
        _check_accelerator(acc, at)
        acc = typed_accelerator(acc, at)
        resolved[key] = acc
        notes.append(stated_note(acc, acc_path))
        if key == "accelerator":
            resolved = {**default_homes(acc, at), **resolved}
        if map_key in data:
            map_path = base / data[map_key]
            mapping = _read(map_path, f"{where}: {map_key}")
            check_mapping(mapping, f"{where}: {map_key} {map_path}")
            target, note = gemm_mapping(mapping, map_path, acc, where, cache_dir().parent)
            resolved[map_key] = str(target)
            notes.append(note)
    if data.get("hw_config"):
        resolved["hw_config"] = str(base / data["hw_config"])
    resolved["source"] = " ".join(data["source"].split()) + "".join(notes)
    if data.get("same_area_bits") and "accelerator" in data:
        resolved.update(_same_area(resolved, where))
    scenario = Scenario(**resolved)
    _check(scenario, where)
    return scenario


def _widths(data: dict, width: str | None, where: str) -> dict:
    """The width fields of a scenario as tuples, checked (`hwsim.cost.widths`); a name suffix `@width`
    sets `pe_bits` and the name."""
    out: dict = {}
    if width is not None:
        out["pe_bits"] = parse_pe_bits(width, where)
        out["name"] = f"{data.get('name', 'scenario')}@{width}"
    for key in ("pe_bits", "same_area_bits"):
        value = out.get(key, data.get(key))
        if value is not None:
            bits = (value, value) if isinstance(value, int) else tuple(value)
            check_pe_bits(bits, f"{where}: {key}")
            out[key] = bits
    if "same_area_bits" in out and "pe_bits" not in out:
        raise UserError(f"{where}: same_area_bits needs pe_bits (the width of the array that keeps that area); "
                        f"add pe_bits or ask for the scenario as NAME@WIDTH")
    if data.get("acc_bits") is not None:
        check_acc(data["acc_bits"], f"{where}: acc_bits", f"give acc_bits of at most {ACC_MAX} or leave it out "
                  f"(then the model's declared accumulator width)")
    return out


def _same_area(resolved: dict, where: str) -> dict:
    """The accelerator and mapping of a same-area array (`hwsim.cost.widths.same_area_sizes`), from the
    packaged area table."""
    from hwsim.cost.tables import load_area_table
    from hwsim.cost.zigzag_map import cache_dir

    acc = resolved["accelerator"]
    array = acc["operational_array"]
    sizes = same_area_sizes(acc, resolved["pe_bits"], resolved["same_area_bits"], load_area_table().um2)
    a, b = resolved["same_area_bits"], resolved["pe_bits"]
    out = {"accelerator": {**acc, "operational_array": {**array, "sizes": sizes}},
           "mapping": sized_mapping(resolved["mapping"], list(array["sizes"]), sizes, list(array["dimensions"]),
                                    cache_dir().parent),
           "source": resolved["source"] + (f" Array of {b[0]}x{b[1]}-bit PEs in the PE area of its {a[0]}x{a[1]}-bit "
                                           f"array: {'x'.join(map(str, sizes))} PEs (hwsim.cost.widths, same-area "
                                           f"rule, area45.csv).")}
    return out


def _check_accelerator(acc: dict, where: str) -> None:
    if acc["operational_array"].get("is_imc"):
        raise UserError(f"{where}: {acc['name']!r} is an in-memory-computing array (operational_array.is_imc): "
                        f"hwsim prices digital processing elements from its own counts and does not run ZigZag's "
                        f"IMC cost model; use a digital array")
    for operand, mem_op in OPERAND_OF.items():
        if not any(mem_op in m["operands"] for m in acc["memories"].values()):
            raise UserError(f"{where}: no memory level holds operand {mem_op} ({operand}); every operand needs "
                            f"at least one level, e.g. add {mem_op} to the global buffer's operands")


def _check(s: Scenario, where: str) -> None:
    if s.kind == "counts":
        return
    if s.accelerator is None or s.mapping is None:
        raise UserError(f"{where}: a mapped scenario needs `accelerator` and `mapping` files")
    if bool(s.attention_accelerator) != bool(s.attention_mapping):
        raise UserError(f"{where}: give attention_accelerator and attention_mapping together")
    for acc in filter(None, (s.accelerator, s.attention_accelerator)):
        mems = acc["memories"]
        for key in ("weights_home", "activations_home"):
            level = getattr(s, key)
            if level not in mems:
                raise UserError(f"{where}: {key} {level!r} is not a memory of accelerator "
                                f"{acc.get('name')!r} (it has {list(mems)}); add that level or name one of these")
        if not any(m["mem_type"] == "dram" for m in mems.values()):
            raise UserError(f"{where}: accelerator {acc.get('name')!r} has no memory with mem_type dram; "
                            f"add the off-chip level (operands that do not fit on chip spill there)")


def level_names(acc: Mapping, mem_op: str) -> list[str]:
    """The memories holding `mem_op`, innermost first (ZigZag's order: the file's order)."""
    return [name for name, mem in acc["memories"].items() if mem_op in mem["operands"]]


def dram_level(acc: Mapping) -> str:
    return next(name for name, mem in acc["memories"].items() if mem["mem_type"] == "dram")


def homes_accelerator(acc: Mapping, homes: Mapping[str, str]) -> dict:
    """`acc` with each memory operand removed from the levels above its home
    (`homes`: memory operand -> level name); levels left with no operand are dropped. Where the home
    does not hold the operand (ZigZag's tpu_like keeps I2 only in per-PE registers and DRAM, so an
    attention stage's K or V cannot live in its activation buffer), the operand lives in the nearest
    level outside the home that holds it."""
    out = copy.deepcopy(dict(acc))
    order = list(out["memories"])
    for mem_op, home in homes.items():
        levels = level_names(out, mem_op)
        if home not in levels and home in order:   # e.g. K/V of attention where the activation buffer holds no I2
            home = next((n for n in order[order.index(home) + 1:] if n in levels), home)
        if home not in levels:
            raise UserError(f"accelerator {acc.get('name')!r}: level {home!r} does not hold operand {mem_op} "
                            f"(levels holding it: {levels}); fix the scenario's homes or the level's operands")
        for name in order[order.index(home) + 1:]:
            mem = out["memories"][name]
            if mem_op in mem["operands"]:
                mem["operands"] = [o for o in mem["operands"] if o != mem_op]
                for port in mem["ports"]:
                    port["allocation"] = [a for a in port["allocation"] if not a.startswith(mem_op + ",")]
    for name in order:
        if not out["memories"][name]["operands"]:
            del out["memories"][name]
        else:
            mem = out["memories"][name]
            mem["ports"] = [p for p in mem["ports"] if p["allocation"]]
    return out
