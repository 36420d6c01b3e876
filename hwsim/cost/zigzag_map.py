"""Map one GEMM-shaped stage onto an accelerator with ZigZag and keep what hwsim needs of the result.

ZigZag (KU Leuven MICAS, `zigzag-dse`) searches spatial and temporal mappings of a loop nest on a
memory hierarchy and returns, for the best mapping, the accesses of every memory level per operand
and the cycles including stalls. hwsim runs ZigZag's own stages (parse workload and accelerator,
spatial mapping, LOMA temporal mapping search, cost model) with the options in `ZIGZAG_OPTIONS`,
the same as `zigzag.api.get_hardware_performance_zigzag(..., **ZIGZAG_OPTIONS)` minus its file
dumps; `tests/test_cost.py` and `bench/mapping_validate.py` check the two give identical accesses
and cycles.

What is kept (`MappedStage`): per memory level, reads and writes in accesses of the level's widest
port, and their energy at the level's r_cost/w_cost; cycles (`latency_total2`: computation plus
data loading and off-loading stalls) and ideal cycles. ZigZag's MAC energy is not used: hwsim
prices each processing-element action as what it is from its exact counts.

Results are cached on disk (`HWSIM_CACHE`/zigzag, default ~/.cache/inhibitor-hwsim/zigzag), keyed
by the stage's loop nest and widths, the resolved accelerator and mapping, the ZigZag version and
the options: a mapping is computed once per (stage, shape, scenario).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Mapping

import yaml

from hwsim.cost.stages import GemmStage
from models.errors import UserError

ZIGZAG_OPTIONS = {"opt": "energy", "lpf_limit": 4, "nb_spatial_mappings_generated": 1,
                  "temporal_mapping_type": "uneven"}
"""LOMA with 4 loop prime factors per ordering (ZigZag's default is 6), 11-27x faster on Linear tiles. hwsim maps one tile
(<= 128 rows, one head) at a time, where it finds mappings of the same energy as 6 on every tile of a
MiniLM layer, with equal cycles on five of seven and 1-3 % fewer on the FFN tiles
(`bench/mapping_validate.py`, part 5)."""
EQUATION = "O[g][t][b][k]+=I[g][t][b][c]*W[g][c][k]"
LOOP_DIMS = ("G", "T", "B", "K", "C")
from hwsim.cost.schedule import ROW_TILE
"""Rows stream through the array in tiles of at most 128 (loop T over tiles, B inside a tile), as a
compiler tiles them so that a tile's partial sums stay in the accumulator buffer. Without the split
LOMA (at `lpf_limit` 4) kept one 512-row loop and re-read every weight per row: 8x the cycles and
3.8x the energy of the tiled mapping on a 512x384x384 Linear. Rows that do not divide are padded
(the padding's cycles are counted; utilisation shows them)."""


@dataclass(frozen=True)
class MappedStage:
    """ZigZag's figures for one stage: `levels[name] = {"read": accesses, "write": accesses, "pJ": energy}`
    summed over operands; `by_operand[operand][name]` the same per operand (I, W, O)."""

    cycles: float
    ideal_cycles: float
    levels: Mapping[str, Mapping[str, float]]
    by_operand: Mapping[str, Mapping[str, Mapping[str, float]]]
    spatial_utilisation: float


def workload(stage: GemmStage) -> list[dict]:
    """The ZigZag workload (one layer) of a stage."""
    tiles, rows = -(-stage.rows // ROW_TILE), min(stage.rows, ROW_TILE)
    return [{"id": 0, "name": f"{stage.kind}", "operator_type": "Gemm", "equation": EQUATION,
             "loop_dims": list(LOOP_DIMS),
             "loop_sizes": [stage.groups, tiles, rows, stage.cols, stage.reduce],
             "operand_precision": {"I": stage.bits_i, "W": stage.bits_w, "O": stage.bits_o,
                                   "O_final": stage.bits_final}}]


def cache_dir() -> Path:
    root = Path(os.environ.get("HWSIM_CACHE", Path.home() / ".cache" / "inhibitor-hwsim"))
    return root / "zigzag"


def _key(stage: GemmStage, acc_text: str, mapping_text: str) -> str:
    payload = json.dumps([stage.shape_key(), ROW_TILE, acc_text, mapping_text, version("zigzag-dse"), ZIGZAG_OPTIONS])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _quiet() -> None:
    logging.getLogger("zigzag").setLevel(logging.ERROR)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("zigzag"):
            logging.getLogger(name).setLevel(logging.ERROR)


def run_zigzag(stage: GemmStage, accelerator_yaml: str, mapping_yaml: str):
    """The best cost-model evaluation ZigZag finds for `stage` (no files written)."""
    from zigzag.mapping.temporal_mapping import TemporalMappingType
    from zigzag.opt.loma.engine import NoValidLoopOrderingFoundException
    from zigzag.stages.evaluation.cost_model_evaluation import CostModelStage
    from zigzag.stages.main import MainStage
    from zigzag.stages.mapping.spatial_mapping_generation import SpatialMappingGeneratorStage
    from zigzag.stages.mapping.temporal_mapping_generator_stage import TemporalMappingGeneratorStage
    from zigzag.stages.parser.accelerator_parser import AcceleratorParserStage
    from zigzag.stages.parser.workload_parser import WorkloadParserStage
    from zigzag.stages.results.reduce_stages import MinimalEnergyStage
    from zigzag.stages.workload_iterator import WorkloadStage

    _quiet()
    stages = [WorkloadParserStage, AcceleratorParserStage, WorkloadStage, MinimalEnergyStage,
              SpatialMappingGeneratorStage, MinimalEnergyStage, TemporalMappingGeneratorStage, CostModelStage]
    main = MainStage(stages, accelerator=accelerator_yaml, workload=workload(stage), mapping=mapping_yaml,
                     loma_lpf_limit=ZIGZAG_OPTIONS["lpf_limit"], loma_show_progress_bar=False,
                     nb_mappings_generated=ZIGZAG_OPTIONS["nb_spatial_mappings_generated"],
                     enable_mix_spatial_mapping_generation=False, access_same_data_considered_as_no_access=True,
                     temporal_mapping_type=TemporalMappingType(ZIGZAG_OPTIONS["temporal_mapping_type"]))
    try:
        return main.run()[0][0]
    except NoValidLoopOrderingFoundException:
        raise UserError(f"stage {stage.kind} {stage.groups}x{stage.rows}x{stage.cols}x{stage.reduce} does not fit "
                        f"the memory hierarchy of {accelerator_yaml}: ZigZag found no valid mapping; make the "
                        f"levels larger (an operand tile must fit its innermost level) or check the spatial "
                        f"unrolling of {mapping_yaml}") from None


def summarise_cme(cme, pes: int) -> MappedStage:
    """The figures hwsim keeps of a ZigZag cost-model evaluation."""
    from zigzag.hardware.architecture.memory_port import DataDirection

    by_operand: dict[str, dict[str, dict[str, float]]] = {}
    levels: dict[str, dict[str, float]] = {}
    hierarchy = cme.accelerator.memory_hierarchy
    for layer_op, accesses in cme.memory_word_access.items():
        mem_op = cme.memory_operand_links.layer_to_mem_op(layer_op)
        mem_levels = hierarchy.get_memory_levels(mem_op=mem_op)
        rows: dict[str, dict[str, float]] = {}
        for acc, level, energy in zip(accesses, mem_levels, cme.mem_energy_breakdown[layer_op]):
            reads = float(acc.get(DataDirection.RD_OUT_TO_LOW) + acc.get(DataDirection.RD_OUT_TO_HIGH))
            writes = float(acc.get(DataDirection.WR_IN_BY_LOW) + acc.get(DataDirection.WR_IN_BY_HIGH))
            rows[level.name] = {"read": reads, "write": writes, "pJ": float(energy)}
            cell = levels.setdefault(level.name, {"read": 0.0, "write": 0.0, "pJ": 0.0})
            for k, v in rows[level.name].items():
                cell[k] += v
        by_operand[str(layer_op)] = rows
    return MappedStage(cycles=float(cme.latency_total2), ideal_cycles=float(cme.ideal_cycle),
                       levels=levels, by_operand=by_operand,
                       spatial_utilisation=float(cme.mac_spatial_utilization))


def cache_path(stage: GemmStage, acc_text: str, mapping_yaml: str) -> Path:
    """Where the mapping of `stage` on the accelerator dumped as `acc_text` is cached."""
    return cache_dir() / f"{_key(stage, acc_text, Path(mapping_yaml).read_text(encoding='utf-8'))}.json"


def dump_accelerator(accelerator: Mapping) -> str:
    return yaml.dump(dict(accelerator), Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False)


def fit_words(stage: GemmStage, accelerator: Mapping) -> Mapping:
    """`accelerator` with every memory holding partial sums (O) but smaller than one of the stage's
    (`bits_o`) widened to one (ZigZag finds no mapping otherwise): ZigZag's example files size output
    registers for 16-bit partial sums (`rf_2B`), hwsim's stages accumulate at the width the accumulator
    provably needs (13-27 bits for MiniLM-size W8A8 models). Costs per access stay as stated, so a
    24-bit partial sum through a 16-bit port is two accesses. Input and weight levels are kept as given: one too small for an operand is an error."""
    narrow = [name for name, mem in accelerator["memories"].items()
              if "O" in mem["operands"] and int(mem["size"]) < stage.bits_o]
    if not narrow:
        return accelerator
    return {**accelerator, "memories": {name: {**mem, "size": stage.bits_o} if name in narrow else mem
                                        for name, mem in accelerator["memories"].items()}}


def map_stage(stage: GemmStage, accelerator: Mapping, mapping_yaml: str, pes: int) -> MappedStage:
    """`stage` mapped on the resolved `accelerator` (a dict in ZigZag's format, `fit_words` applied),
    cached on disk."""
    accelerator = fit_words(stage, accelerator)
    acc_text = dump_accelerator(accelerator)
    path = cache_path(stage, acc_text, mapping_yaml)
    if path.exists():
        try:
            return MappedStage(**json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError):
            path.unlink(missing_ok=True)  # a torn or foreign file: recompute
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hwsim-zz-") as tmp:
        acc_path = Path(tmp) / "accelerator.yaml"
        acc_path.write_text(acc_text, encoding="utf-8")
        result = summarise_cme(run_zigzag(stage, str(acc_path), mapping_yaml), pes)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(asdict(result), fh)
    os.replace(tmp_name, path)
    return result
