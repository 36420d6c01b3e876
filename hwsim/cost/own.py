"""Bring your own accelerator: what hwsim infers where a ZigZag accelerator or mapping file says less
than hwsim's own files (ZigZag's shipped `inputs/hardware/*.yaml` state every cost and no `mem_type`).

- DRAM (where operands spill, where weights live by default): the memory whose `mem_type` is `dram`,
  else the outermost memory holding all three operands I1, I2, O.
- A memory that states `r_cost`, `w_cost` and `area` is priced as stated (the file's own numbers; the
  scenario's source line says so), and its SRAM leakage is not known (none is stated), so none is
  counted. Its `mem_type`, where left out, only says where its energy is reported: `dram` for the DRAM
  level, `sram` (buffer) for a memory the whole array shares (served along every array dimension), `reg`
  otherwise (one per PE or per group of PEs, as ZigZag's `rf_*` levels).
- A memory that leaves a cost out is priced by its `mem_type`; where that is left out too, the DRAM
  level is taken as `dram` if its size is effectively unbounded (>= `UNBOUNDED_BITS`); any other such
  memory is an error that names it.
- Homes: `weights_home` left out = the DRAM level; `activations_home` left out = the outermost on-chip
  memory holding both I1 and O (the DRAM level where there is none, as in gemm_l1's single `l1`).
- Mappings: the stages' loop dims are G, T, B, K, C (`hwsim.cost.zigzag_map.LOOP_DIMS`); ZigZag's
  example mappings unroll convolution dims, which a GEMM is by im2col: output pixels OX, OY are its rows
  (B), filter taps FX, FY part of its reduction (C). Such a mapping is rewritten (into the cache
  folder) with those names; any other loop dim is an error pointing at a packaged mapping.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Mapping

import yaml

from models.errors import UserError

UNBOUNDED_BITS = 2 ** 30
COSTS = ("r_cost", "w_cost", "area")
IM2COL = {"OX": "B", "OY": "B", "FX": "C", "FY": "C"}
GEMM_DIMS = ("G", "T", "B", "K", "C")
PACKAGED_MAPPING = "hwsim/cost/scenarios/mappings/ws32.yaml"


def stated(mem: Mapping) -> bool:
    return all(mem.get(k) is not None for k in COSTS)


def dram_name(acc: Mapping, where: str) -> str:
    """The DRAM level (module docstring)."""
    mems = acc["memories"]
    typed = [n for n, m in mems.items() if m.get("mem_type") == "dram"]
    if typed:
        return typed[0]
    holding_all = [n for n, m in mems.items() if {"I1", "I2", "O"} <= set(m["operands"])]
    if not holding_all:
        raise UserError(f"{where}: no memory holds all of I1, I2, O, so hwsim cannot tell which level is DRAM "
                        f"(where operands spill); add `mem_type: dram` to the off-chip level")
    return holding_all[-1]


def typed_accelerator(acc: Mapping, where: str) -> dict:
    """`acc` with every memory's `mem_type` set (module docstring), or a `UserError` naming the memory
    that needs one."""
    out = {**acc, "memories": {n: dict(m) for n, m in acc["memories"].items()}}
    dram = dram_name(acc, where)
    for name, mem in out["memories"].items():
        if mem.get("mem_type") is not None:
            continue
        if name == dram and (stated(mem) or mem["size"] >= UNBOUNDED_BITS):
            mem["mem_type"] = "dram"
        elif stated(mem):
            whole_array = set(mem["served_dimensions"]) == set(acc["operational_array"]["dimensions"])
            mem["mem_type"] = "sram" if whole_array else "reg"
        else:
            missing = [k for k in COSTS if mem.get(k) is None]
            raise UserError(f"{where}: memory {name!r} leaves {', '.join(missing)} out and has no mem_type, so hwsim "
                            f"cannot price it; add mem_type: sram (or reg, link, dram) to memories.{name}, or "
                            f"state its r_cost, w_cost (pJ per access) and area (mm2)")
    return out


def default_homes(acc: Mapping, where: str) -> dict[str, str]:
    """weights_home and activations_home where the scenario leaves them out."""
    dram = dram_name(acc, where)
    on_chip = [n for n, m in acc["memories"].items() if n != dram and {"I1", "O"} <= set(m["operands"])]
    return {"weights_home": dram, "activations_home": on_chip[-1] if on_chip else dram}


def stated_note(acc: Mapping, path: Path) -> str:
    """The source-line note of a file whose memories state their costs ('' when none does)."""
    names = [n for n, m in acc["memories"].items() if stated(m)]
    if not names:
        return ""
    narrow = [f"{n} ({m['size']} bits)" for n, m in acc["memories"].items() if "O" in m["operands"] and m["size"] < 32]
    return (f" Memory costs as stated in {path.name} ({', '.join(names)}; no leakage stated, none counted)."
            + (f" Partial-sum registers narrower than 32 bits ({', '.join(narrow)}) are widened to one partial "
               f"sum where a stage's proven accumulator width exceeds them (costs per access as stated)."
               if narrow else ""))


def _dim(name: str, where: str) -> str:
    if name in GEMM_DIMS:
        return name
    if name in IM2COL:
        return IM2COL[name]
    raise UserError(f"{where} unrolls loop dim {name!r}, which the GEMM stages do not have (their loop dims are "
                    f"{', '.join(GEMM_DIMS)}; convolution dims OX, OY, FX, FY are read by im2col as B and C); "
                    f"use a mapping in these dims, e.g. {PACKAGED_MAPPING}")


def _entry(entry: dict, where: str) -> dict:
    out = dict(entry)
    if entry.get("spatial_mapping"):
        spatial = {}
        for d, unrolls in entry["spatial_mapping"].items():
            sizes: dict[str, int] = {}
            for text in unrolls:
                dim, size = (s.strip() for s in text.split(","))
                dim = _dim(dim, where)
                sizes[dim] = sizes.get(dim, 1) * int(size)
            spatial[d] = [f"{dim}, {size}" for dim, size in sizes.items()]
        out["spatial_mapping"] = spatial
    if entry.get("spatial_mapping_hint"):
        out["spatial_mapping_hint"] = {d: sorted({_dim(x, where) for x in dims})
                                       for d, dims in entry["spatial_mapping_hint"].items()}
    if entry.get("temporal_ordering"):
        out["temporal_ordering"] = [[_dim(d, where) if d != "*" else d, s] for d, s in entry["temporal_ordering"]]
    return out


def gemm_mapping(data: list, path: Path, acc: Mapping, where: str, cache_root: Path) -> tuple[Path, str]:
    """(mapping file ZigZag runs, source-line note): `path` itself when its GEMM entry already uses the
    stages' loop dims, else its im2col reading written into `cache_root`."""
    where = f"{where}: mapping {path}"
    out = [_entry(e, where) if e["name"] in ("default", "Gemm") else e for e in data]
    sizes = dict(zip(acc["operational_array"]["dimensions"], acc["operational_array"]["sizes"]))
    for entry in out:
        if entry["name"] not in ("default", "Gemm"):
            continue
        for d, unrolls in (entry.get("spatial_mapping") or {}).items():
            total = 1
            for text in unrolls:
                total *= int(text.split(",")[1])
            if d not in sizes or total > sizes[d]:
                raise UserError(f"{where} unrolls {total} on {d}, but accelerator {acc['name']!r} has "
                                f"{sizes.get(d, 'no such dimension')} PEs there (dimensions {sizes}); use a mapping "
                                f"made for this array (ZigZag ships one per example) or e.g. {PACKAGED_MAPPING} "
                                f"for a 32x32 array")
    if out == data:
        return path, ""
    target = cached_mapping(yaml.safe_dump(out, sort_keys=False), path.stem, cache_root)
    return target, f" Mapping {path.name} read by im2col (OX, OY -> rows B; FX, FY -> reduction C)."


def cached_mapping(text: str, stem: str, cache_root: Path) -> Path:
    """A generated mapping file, `<cache_root>/mappings/<stem>-<content hash>.yaml`: written once,
    atomically, and named by its content, so concurrent writers and later runs share it."""
    folder = cache_root / "mappings"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
    if not target.exists():
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    return target
