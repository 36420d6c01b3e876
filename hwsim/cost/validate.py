"""Field-by-field checks of scenario, accelerator and mapping files, as tables of (field, check).

Each table row names a field, whether it may be left out, and a `Check`: a predicate and what the
field must be, in the words the error message uses ("a positive integer (bits)"). A failed check is a
`UserError` naming the file and the field's path, e.g.
`scenario my.yaml: accelerator acc.yaml: memories.gb.size must be a positive integer (bits), got '4MB'`.
The accelerator rows are the fields ZigZag (zigzag-dse 3.9.1, `AcceleratorValidator`) and hwsim read;
checking them here turns what would be ZigZag's log line or a Python traceback into that message.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from models.errors import UserError

MEM_TYPES = ("reg", "link", "sram", "dram")
KINDS = ("mapped", "counts")


@dataclass(frozen=True)
class Check:
    ok: Callable[[Any], bool]
    must_be: str


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _num(x: Any) -> bool:
    return (_int(x) or isinstance(x, float)) and x == x and x not in (float("inf"), float("-inf"))


def _strings(pattern: str) -> Callable[[Any], bool]:
    return lambda x: isinstance(x, list) and all(isinstance(s, str) and re.fullmatch(pattern, s) for s in x)


TEXT = Check(lambda x: isinstance(x, str) and x.strip() != "", "a non-empty string")
FILE = Check(lambda x: isinstance(x, str) and x.strip() != "", "a file path (a string, relative to the scenario file)")
LEVEL = Check(lambda x: isinstance(x, str) and x != "", "the name of one of the accelerator's memories (a string)")
POS_INT = Check(lambda x: _int(x) and x >= 1, "a positive integer")
COUNT = Check(lambda x: _int(x) and x >= 0, "an integer >= 0")
BITS = Check(lambda x: _int(x) and x >= 1, "a positive integer (bits)")
MHZ = Check(lambda x: _num(x) and x > 0, "a positive number (MHz)")
PJ = Check(lambda x: _num(x) and x >= 0, "a number >= 0 (pJ per access)")
MM2 = Check(lambda x: _num(x) and x >= 0, "a number >= 0 (mm2)")
NUMBER = Check(lambda x: _num(x) and x >= 0, "a number >= 0")
FLAG = Check(lambda x: isinstance(x, bool), "true or false")

SCENARIO = {
    "name": (True, TEXT), "source": (True, TEXT),
    "kind": (False, Check(lambda x: x in KINDS, f"one of {list(KINDS)}")),
    "accelerator": (False, FILE), "mapping": (False, FILE),
    "attention_accelerator": (False, FILE), "attention_mapping": (False, FILE),
    "clock_mhz": (False, MHZ), "batch": (False, Check(POS_INT.ok, "a positive integer (samples)")),
    "dram_kind": (False, Check(TEXT.ok, "a DRAM kind of the memory table (a string, e.g. DDR3)")),
    "weights_home": (False, LEVEL), "activations_home": (False, LEVEL),
    "vector_lanes": (False, Check(POS_INT.ok, "a positive integer (elements per cycle)")),
    "hw_config": (False, FILE),
    "pe_bits": (False, Check(lambda x: _int(x) or (isinstance(x, list) and len(x) == 2 and all(_int(b) for b in x)),
                             "an operand width in bits (an integer) or [input, weight] widths")),
    "same_area_bits": (False, Check(lambda x: _int(x) or (isinstance(x, list) and len(x) == 2
                                                          and all(_int(b) for b in x)),
                                    "the operand width in bits (an integer, or [input, weight]) of the array "
                                    "whose area to keep")),
    "acc_bits": (False, Check(_int, "an integer (accumulator bits)")),
}
"""Scenario field -> (required, check); a field left out or null takes the `Scenario` default."""

MEMORY = {
    "size": (True, BITS), "r_cost": (False, PJ), "w_cost": (False, PJ), "area": (False, MM2),
    "latency": (True, Check(COUNT.ok, "an integer >= 0 (cycles)")),
    "mem_type": (False, Check(lambda x: x in MEM_TYPES, f"one of {list(MEM_TYPES)}")),
    "operands": (True, Check(lambda x: _strings(r"I1|I2|O")(x) and x != [] and len(set(x)) == len(x),
                             "a non-empty list of distinct operands I1, I2, O")),
    "ports": (True, Check(lambda x: isinstance(x, list) and x != [] and all(isinstance(p, dict) for p in x),
                          "a non-empty list of ports (each a mapping)")),
    "served_dimensions": (True, Check(_strings(r"D\d"), "a list of array dimensions (D1, D2, ...), [] for per-PE")),
    "auto_cost_extraction": (False, FLAG), "force_double_buffering": (False, FLAG),
}
PORT = {
    "name": (True, Check(lambda x: isinstance(x, str) and re.fullmatch(r"r?w?_port_\d+", x) is not None,
                         "a port name like r_port_1, w_port_1 or rw_port_1")),
    "type": (True, Check(lambda x: x in ("read", "write", "read_write"), "one of ['read', 'write', 'read_write']")),
    "bandwidth_min": (True, Check(POS_INT.ok, "a positive integer (bits per cycle)")),
    "bandwidth_max": (True, Check(POS_INT.ok, "a positive integer (bits per cycle)")),
    "allocation": (True, Check(lambda x: _strings(r"(I1|I2|O), (fh|tl|fl|th)")(x) and x != [],
                               "a non-empty list of 'OPERAND, DIRECTION' strings (e.g. 'I1, tl')")),
}
ARRAY = {
    "dimensions": (True, Check(lambda x: _strings(r"D\d")(x) and x != [] and len(set(x)) == len(x),
                               "a non-empty list of distinct dimensions D1, D2, ...")),
    "sizes": (True, Check(lambda x: isinstance(x, list) and x != [] and all(POS_INT.ok(s) for s in x),
                          "a non-empty list of positive integers (PEs along each dimension)")),
    "systolic_dimensions": (False, Check(_strings(r"D\d"), "a list of array dimensions")),
    "input_precision": (False, Check(lambda x: isinstance(x, list) and len(x) == 2 and all(BITS.ok(b) for b in x),
                                     "a list of two positive integers (bits)")),
    "unit_energy": (False, Check(NUMBER.ok, "a number >= 0 (pJ per MAC)")),
    "unit_area": (False, NUMBER), "is_imc": (False, FLAG),
}
MAPPING_ENTRY = {
    "name": (True, TEXT),
    "spatial_mapping": (False, Check(lambda x: isinstance(x, dict) and all(
        re.fullmatch(r"D\d", str(d)) and _strings(r"[A-Za-z]\w*, *\d+")(v) for d, v in x.items()),
        "a mapping of array dimensions to lists of 'LOOP_DIM, size' strings (e.g. D1: ['K, 32'])")),
    "spatial_mapping_hint": (False, Check(lambda x: isinstance(x, dict), "a mapping of array dimensions to loop dims")),
    "temporal_ordering": (False, Check(lambda x: isinstance(x, list), "a list of [LOOP_DIM, size] pairs")),
    "memory_operand_links": (True, Check(lambda x: isinstance(x, dict) and set(x) == {"O", "W", "I"}
                                         and all(v in ("O", "I1", "I2") for v in x.values()),
                                         "a mapping of O, W, I to the memory operands O, I1, I2")),
}


def check_fields(data: Any, table: dict, where: str, path: str = "", extra_ok: bool = False) -> None:
    """Check `data` (a mapping) against `table`; `path` prefixes field names in messages."""
    what = path.rstrip(".") or "the file"
    if not isinstance(data, dict):
        raise UserError(f"{where}: {what} must be a mapping of the fields {list(table)}, got {data!r}")
    unknown = sorted(set(map(str, data)) - set(table))
    if unknown and not extra_ok:
        raise UserError(f"{where}: unknown keys {unknown} in {what}; known keys are {sorted(table)}")
    for key, (required, check) in table.items():
        value = data.get(key)
        if value is None:
            if required:
                raise UserError(f"{where}: {path}{key} is missing; it must be {check.must_be}")
            continue
        if not check.ok(value):
            raise UserError(f"{where}: {path}{key} must be {check.must_be}, got {value!r}")


def check_accelerator(acc: Any, where: str) -> None:
    """Every field of a ZigZag accelerator file that ZigZag or hwsim reads."""
    check_fields(acc, {"name": (True, TEXT), "memories": (True, Check(lambda x: isinstance(x, dict) and x != {},
                                                                      "a non-empty mapping of memory names to memories")),
                       "operational_array": (True, Check(lambda x: isinstance(x, dict), "a mapping")),
                       "dataflows": (False, Check(lambda x: isinstance(x, dict), "a mapping"))}, where)
    array = acc["operational_array"]
    check_fields(array, ARRAY, where, "operational_array.", extra_ok=True)
    dims = array["dimensions"]
    if len(array["sizes"]) != len(dims):
        raise UserError(f"{where}: operational_array.sizes {array['sizes']} and dimensions {dims} differ in "
                        f"length; give one size per dimension")
    for key in ("systolic_dimensions",):
        stray = sorted(set(array.get(key) or []) - set(dims))
        if stray:
            raise UserError(f"{where}: operational_array.{key} names {stray}, not among dimensions {dims}")
    for name, mem in acc["memories"].items():
        at = f"memories.{name}."
        check_fields(mem, MEMORY, where, at)
        stray = sorted(set(mem["served_dimensions"]) - set(dims))
        if stray:
            raise UserError(f"{where}: {at}served_dimensions names {stray}, not among operational_array.dimensions {dims}")
        for i, port in enumerate(mem["ports"]):
            check_fields(port, PORT, where, f"{at}ports[{i}].")
            if port["bandwidth_min"] > port["bandwidth_max"]:
                raise UserError(f"{where}: {at}ports[{i}].bandwidth_min {port['bandwidth_min']} exceeds "
                                f"bandwidth_max {port['bandwidth_max']}")
            for alloc in port["allocation"]:
                op, direction = alloc.split(", ")
                if op not in mem["operands"]:
                    raise UserError(f"{where}: {at}ports[{i}].allocation {alloc!r} names operand {op}, which the "
                                    f"memory does not hold (operands {mem['operands']})")
                if (direction in ("fh", "fl") and port["type"] == "read") or (direction in ("tl", "th") and port["type"] == "write"):
                    raise UserError(f"{where}: {at}ports[{i}].allocation {alloc!r} does not fit a {port['type']} port")


def check_mapping(data: Any, where: str) -> None:
    """A ZigZag mapping file: a list of entries, one named `default` (or `Gemm`, the stages' operator type)."""
    if not isinstance(data, list) or not data:
        raise UserError(f"{where} must be a list of mapping entries (name, spatial_mapping, memory_operand_links), "
                        f"got {type(data).__name__}")
    for i, entry in enumerate(data):
        check_fields(entry, MAPPING_ENTRY, where, f"[{i}].")
    if not any(e["name"] in ("default", "Gemm") for e in data):
        raise UserError(f"{where} has no entry named 'default' or 'Gemm' (the GEMM stages' operator type); "
                        f"add one, e.g. as in hwsim/cost/scenarios/mappings/ws32.yaml")
