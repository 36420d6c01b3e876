"""Scenarios: an accelerator, its mapping and how a model is served on it, as data files.

A scenario is a small YAML file (`hwsim/scenarios/*.yaml`, or any file a user passes):

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

Accelerator files are ZigZag's format (memories innermost first, sizes in bits, one `mem_type` per
memory: `reg`, `link` (a PE-to-PE operand register), `sram` or `dram`). Where a memory leaves `r_cost`/`w_cost`/`area` out, hwsim fills them
from its tables (`hwsim.cost.pricing`): the resolved file is what ZigZag runs, and
`resolved_accelerator` writes it out so ZigZag can be run on it standalone.
Each operand's home is the top of its hierarchy for one stage: `homes_accelerator` removes the
operand from every memory above its home, so ZigZag starts and ends the operand there.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from models.errors import UserError

PACKAGED = Path(__file__).resolve().parents[1] / "scenarios"
KINDS = ("mapped", "counts")
MEM_TYPES = ("reg", "link", "sram", "dram")
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
    weights_home: str = "dram"
    activations_home: str = "gb"
    vector_lanes: int = 32
    hw_config: str | None = None


def packaged_names() -> list[str]:
    return sorted(p.stem for p in PACKAGED.glob("*.yaml"))


def _read(path: str | Path) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} not found") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not valid YAML: {err}") from None


def _locate(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise UserError(f"scenario file {path} not found; pass an existing YAML file or one of the "
                            f"packaged scenarios {packaged_names()}")
        return path
    packaged = PACKAGED / f"{name_or_path}.yaml"
    if not packaged.exists():
        raise UserError(f"unknown scenario {str(name_or_path)!r}: use one of {packaged_names()} "
                        f"or the path of a scenario YAML file")
    return packaged


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A packaged scenario by name, or a scenario file; `UserError` names what is wrong."""
    path = _locate(name_or_path)
    data = _read(path)
    where = f"scenario {path}"
    if not isinstance(data, dict):
        raise UserError(f"{where} must hold a YAML mapping of the fields {[f.name for f in fields(Scenario)]}")
    known = {f.name for f in fields(Scenario)} - {"path"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"{where}: unknown keys {unknown}; known keys are {sorted(known)}")
    missing = [k for k in ("name", "source") if not data.get(k)]
    if missing:
        raise UserError(f"{where} lacks {missing}: every scenario names itself and the source of its figures")
    if data.get("kind", "mapped") not in KINDS:
        raise UserError(f"{where}: kind {data['kind']!r} is not one of {KINDS}")
    base = path.parent
    resolved = dict(data, path=str(path))
    for key in ("accelerator", "attention_accelerator"):
        if data.get(key):
            acc = _read(base / data[key])
            _check_accelerator(acc, f"{where}: {key} {base / data[key]}")
            resolved[key] = acc
    for key in ("mapping", "attention_mapping"):
        if data.get(key):
            mapping = base / data[key]
            if not mapping.exists():
                raise UserError(f"{where}: {key} {mapping} not found")
            resolved[key] = str(mapping)
    if data.get("hw_config"):
        resolved["hw_config"] = str(base / data["hw_config"])
    scenario = Scenario(**resolved)
    _check(scenario, where)
    return scenario


def _check_accelerator(acc: Any, where: str) -> None:
    if not isinstance(acc, dict) or not isinstance(acc.get("memories"), dict) or "operational_array" not in acc:
        raise UserError(f"{where} is not a ZigZag accelerator (needs `memories` and `operational_array`)")
    for name, mem in acc["memories"].items():
        if mem.get("mem_type") not in MEM_TYPES:
            raise UserError(f"{where}: memory {name!r} needs mem_type one of {MEM_TYPES} "
                            f"(hwsim prices it by kind), got {mem.get('mem_type')!r}")
    for operand, mem_op in OPERAND_OF.items():
        if not any(mem_op in m.get("operands", []) for m in acc["memories"].values()):
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
    for key in ("batch", "vector_lanes"):
        value = getattr(s, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{where}: {key} must be a positive integer, got {value!r}")
    if not isinstance(s.clock_mhz, (int, float)) or s.clock_mhz <= 0:
        raise UserError(f"{where}: clock_mhz must be a positive number, got {s.clock_mhz!r}")


def level_names(acc: Mapping, mem_op: str) -> list[str]:
    """The memories holding `mem_op`, innermost first (ZigZag's order: the file's order)."""
    return [name for name, mem in acc["memories"].items() if mem_op in mem["operands"]]


def dram_level(acc: Mapping) -> str:
    return next(name for name, mem in acc["memories"].items() if mem["mem_type"] == "dram")


def homes_accelerator(acc: Mapping, homes: Mapping[str, str]) -> dict:
    """`acc` with each memory operand removed from the levels above its home
    (`homes`: memory operand -> level name); levels left with no operand are dropped."""
    out = copy.deepcopy(dict(acc))
    order = list(out["memories"])
    for mem_op, home in homes.items():
        levels = level_names(out, mem_op)
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
