"""Latency of a GEMM-shaped stage on a weight-stationary array: ZigZag's cycles plus each fold's fill and drain.

The rule (SCALE-Sim, Samajdar et al., "A Systematic Methodology for Characterizing Scalability of
DNN Accelerators using SCALE-Sim", ISPASS 2020, weight-stationary dataflow): on an array of `rows`
along the reduction (the unroll of loop dim C) by `cols` along the outputs (the unroll of loop dim K),
every fold (one rows x cols block of weights held stationary while M input rows stream through) costs

    2*rows + cols + M - 2 cycles = rows (load the weights) + M + rows - 1 (stream M skewed rows)
                                   + cols - 1 (drain the last partial sums).

ZigZag charges a fold its M streaming cycles only (`MappedStage.ideal_cycles` = M per fold; its
`cycles` add memory stalls), so hwsim adds the rest, `folds * (2*rows + cols - 2)`, to ZigZag's cycles.
Folds count ZigZag's row tiles (`hwsim.cost.zigzag_map.ROW_TILE`): a tile of at most 128 rows streams
through each weight block once, so a 512-row stage pays four fills per block. SCALE-Sim's stall-free
cycles of a whole layer are `folds * (2*rows + cols + M - 2) - 1`; `bench/mapping_validate.py --part scalesim`
compares the two.
"""
from __future__ import annotations

from math import ceil
from pathlib import Path
from typing import Mapping

import yaml

from hwsim.cost.stages import GemmStage
from hwsim.cost.zigzag_map import ROW_TILE, MappedStage
from models.errors import UserError

STATIONARY_DIMS = ("K", "C")
"""Loop dims a weight-stationary array unrolls: outputs K along one side, the reduction C along the other."""


def spatial_unrolling(mapping_yaml: str) -> dict[str, int]:
    """Loop dim -> unroll factor of the `default` entry of a ZigZag mapping file (products where a
    dim is unrolled on several array dimensions), e.g. {"K": 32, "C": 32} for mappings/ws32.yaml."""
    try:
        entries = yaml.safe_load(Path(mapping_yaml).read_text(encoding="utf-8"))
        (entry,) = [e for e in entries if e.get("name") == "default"]
        unroll: dict[str, int] = {}
        for items in entry["spatial_mapping"].values():
            for item in items:
                dim, factor = (part.strip() for part in str(item).split(","))
                unroll[dim] = unroll.get(dim, 1) * int(factor)
        return unroll
    except (OSError, yaml.YAMLError, TypeError, ValueError, KeyError, AttributeError) as err:
        raise UserError(f"mapping file {mapping_yaml}: cannot read the spatial unrolling of its `default` "
                        f"entry ({type(err).__name__}: {err}); give a ZigZag mapping file with one entry "
                        f"`name: default` whose `spatial_mapping` lists `DIM, FACTOR` items") from None


def folds(stage: GemmStage, unroll: Mapping[str, int]) -> int:
    """Weight folds of `stage`: groups x row tiles x column folds x reduction folds.

    >>> folds(GemmStage("n", "linear", 1, 128, 384, 384, 8, 8, 32, 8, True), {"K": 32, "C": 32})
    144
    >>> folds(GemmStage("n", "scores", 12, 200, 128, 32, 8, 8, 32, 8, False), {"K": 32, "C": 32})
    96
    """
    other = sorted(set(unroll) - set(STATIONARY_DIMS))
    if other:
        raise UserError(f"the fill/drain rule is for weight-stationary arrays (K and C unrolled), but the "
                        f"mapping also unrolls {other}: unroll only K and C, or leave latency to ZigZag alone")
    return (stage.groups * ceil(stage.rows / ROW_TILE) * ceil(stage.cols / unroll.get("K", 1))
            * ceil(stage.reduce / unroll.get("C", 1)))


def fill_drain_cycles(stage: GemmStage, unroll: Mapping[str, int]) -> int:
    """Cycles beyond the M streaming cycles of every fold: folds x (2 * unroll C + unroll K - 2).

    >>> fill_drain_cycles(GemmStage("n", "linear", 1, 128, 384, 384, 8, 8, 32, 8, True), {"K": 32, "C": 32})
    13536
    >>> fill_drain_cycles(GemmStage("n", "linear", 1, 1, 1, 1, 8, 8, 32, 8, True), {"K": 1, "C": 1})
    1
    """
    return folds(stage, unroll) * (2 * unroll.get("C", 1) + unroll.get("K", 1) - 2)


def stage_latency(mapped: MappedStage, stage: GemmStage, unroll: Mapping[str, int]) -> tuple[float, float]:
    """(cycles, ideal cycles) of `stage`: ZigZag's cycles (memory stalls included) plus the fill and
    drain of every fold, and ZigZag's ideal cycles (M per fold, stall-free).

    On an array that also unrolls other loops (not weight-stationary in K and C, e.g. ZigZag's own
    examples that unroll output pixels), the rule does not apply: ZigZag's cycles alone.

    >>> m = MappedStage(cycles=19000.0, ideal_cycles=18432.0, levels={}, by_operand={}, spatial_utilisation=1.0)
    >>> stage_latency(m, GemmStage("n", "linear", 1, 128, 384, 384, 8, 8, 32, 8, True), {"K": 32, "C": 32})
    (32536.0, 18432.0)
    >>> stage_latency(m, GemmStage("n", "linear", 1, 128, 384, 384, 8, 8, 32, 8, True), {"K": 16, "C": 16, "B": 4})
    (19000.0, 18432.0)
    """
    if not weight_stationary(unroll):
        return mapped.cycles, mapped.ideal_cycles
    return mapped.cycles + fill_drain_cycles(stage, unroll), mapped.ideal_cycles


def weight_stationary(unroll: Mapping[str, int]) -> bool:
    """Whether a mapping unrolls only K and C (the dataflow the fill/drain rule describes)."""
    return set(unroll) <= set(STATIONARY_DIMS)
