"""`HwConfig`: the hardware facts that counting needs (memory sizes, word widths, technology).

Loaded from a JSON file (`load_hw(path)`; `None` = the packaged `hwsim/sim/configs/default.json`).
Every key of the file must be a field below; unknown keys and bad values raise `UserError`.
Counting (`hwsim.sim.counting`, `hwsim.sim.memory`) reads it; pricing uses `technology` to pick the rows of
an energy table. No energy figures live here: those are table data (`hwsim/cost/data/`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from models.errors import UserError

DEFAULT_PATH = Path(__file__).with_name("configs") / "default.json"


@dataclass(frozen=True)
class HwConfig:
    """An integer accelerator, as far as op and memory counting is concerned.

    - `rf_bytes`: register file / local buffer of a fused op; an attention score matrix of one head
      that fits stays here and costs no memory access (`hwsim.sim.memory`).
    - `sram_bytes`: on-chip SRAM; activations (per sample) live here when they fit.
    - `sram_word_bits`, `dram_word_bits`: access granularity; accesses are counted in these words.
    - `weights_on_chip`: true = params stay in SRAM when all of them fit next to the activations
      budget (then read from SRAM per inference); false = params stream from DRAM per inference.
    - `technology`: selects the rows of the energy table (column `technology`).
    """

    rf_bytes: int = 1024
    sram_bytes: int = 2 * 1024 * 1024
    sram_word_bits: int = 64
    dram_word_bits: int = 64
    weights_on_chip: bool = False
    technology: str = "45nm"

    def __post_init__(self) -> None:
        for name in ("rf_bytes", "sram_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UserError(f"hardware config: {name} must be a non-negative integer, got {value!r}")
        for name in ("sram_word_bits", "dram_word_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 8 or value % 8:
                raise UserError(f"hardware config: {name} must be a positive multiple of 8, got {value!r}")
        if not isinstance(self.weights_on_chip, bool):
            raise UserError(f"hardware config: weights_on_chip must be true or false, got {self.weights_on_chip!r}")
        if not isinstance(self.technology, str) or not self.technology:
            raise UserError(f"hardware config: technology must be a non-empty string, got {self.technology!r}")


def load_hw(path: str | Path | None = None) -> HwConfig:
    """Read a `HwConfig` from JSON; `None` reads the packaged default. Raises `UserError` for a
    missing or malformed file, unknown keys or bad values."""
    path = Path(path) if path is not None else DEFAULT_PATH
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"hardware config {path} not found; pass an existing JSON file") from None
    except json.JSONDecodeError as err:
        raise UserError(f"hardware config {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise UserError(f"hardware config {path} must hold a JSON object")
    known = {f.name for f in fields(HwConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"hardware config {path}: unknown keys {unknown}; known keys are {sorted(known)}")
    return HwConfig(**data)
