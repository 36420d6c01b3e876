"""Pricing: energy = sum(count * table[action]) over an energy table that is data.

A table is a CSV file (`#` lines are comments stating its rules) with columns
`action,width,technology,pJ,source,interpolated`; its key is `action@width` (`add@8`, `mul@8x8`,
`read.dram@64`). `hwsim/tables/horowitz45.csv` is generated once by `bench/make_energy_table.py`
and loaded as is: no arithmetic happens at load time. Traffic volumes (`bytes.` keys from
`hwsim.memory`) are not actions and are never priced.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from hwsim.memory import TRAFFIC_PREFIX
from models.errors import UserError

DEFAULT_TABLE = Path(__file__).with_name("tables") / "horowitz45.csv"
COLUMNS = ("action", "width", "technology", "pJ", "source", "interpolated")


@dataclass(frozen=True)
class EnergyTable:
    """pJ per `action@width` for one technology, and where the figures came from."""

    technology: str
    pj: Mapping[str, float]
    path: str


def is_action(key: str) -> bool:
    """True for priced actions; False for traffic volumes (`bytes.*`)."""
    return not key.startswith(TRAFFIC_PREFIX)


def load_table(path: str | Path | None = None, technology: str | None = None) -> EnergyTable:
    """Read an energy table (default: the packaged Horowitz 45 nm table) for one technology.

    `technology=None` accepts a file holding exactly one technology. Raises `UserError` for a
    missing file, missing columns, a non-numeric or negative pJ, duplicate keys, or a technology
    the file does not hold.
    """
    path = Path(path) if path is not None else DEFAULT_TABLE
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    except FileNotFoundError:
        raise UserError(f"energy table {path} not found; pass an existing CSV with --energy-table") from None
    reader = csv.DictReader(lines)
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"energy table {path}: missing columns {missing}; expected {list(COLUMNS)}")
    by_tech: dict[str, dict[str, float]] = {}
    for lineno, row in enumerate(reader, start=2):
        key = f"{row['action'].strip()}@{row['width'].strip()}"
        try:
            pj = float(row["pJ"])
        except (TypeError, ValueError):
            raise UserError(f"energy table {path}: row {lineno} ({key}) has pJ {row['pJ']!r}; give a number") from None
        if not pj >= 0:
            raise UserError(f"energy table {path}: row {lineno} ({key}) has negative pJ {pj}")
        rows = by_tech.setdefault(row["technology"].strip(), {})
        if key in rows:
            raise UserError(f"energy table {path}: {key} appears twice for technology {row['technology']!r}")
        rows[key] = pj
    if technology is None:
        if len(by_tech) != 1:
            raise UserError(f"energy table {path} holds technologies {sorted(by_tech)}; choose one")
        technology = next(iter(by_tech))
    if technology not in by_tech:
        raise UserError(f"energy table {path} has no rows for technology {technology!r}; "
                        f"it holds {sorted(by_tech)}")
    return EnergyTable(technology, MappingProxyType(by_tech[technology]), str(path))


def price(counts: Mapping[str, int], table: EnergyTable | Mapping[str, float]) -> dict[str, float]:
    """pJ per action key: `count * table[key]`, traffic volumes skipped.

    Raises `UserError` naming every action key the table lacks.
    """
    pj = table.pj if isinstance(table, EnergyTable) else table
    actions = [key for key in counts if is_action(key)]
    missing = sorted(key for key in actions if key not in pj)
    if missing:
        where = table.path if isinstance(table, EnergyTable) else "the energy table"
        raise UserError(f"{where} has no entry for {', '.join(missing)}; add rows for these "
                        f"action@width keys (see bench/make_energy_table.py) or pass another --energy-table")
    return {key: counts[key] * pj[key] for key in actions}


def total_pj(counts: Mapping[str, int], table: EnergyTable | Mapping[str, float]) -> float:
    """sum(count * table[action]) over the priced actions."""
    return sum(price(counts, table).values())
