"""Pricing: energy = sum(count * table[action]) over an energy table that is data.

A table is a CSV file (`#` lines are comments stating its rules) with columns
`action,width,technology,pJ,source,interpolated`; its key is `action@width` (`add@8`, `mul@8x8`,
`read.dram@64`; `hwsim.sim.actions.ActionKey`). `hwsim/cost/data/horowitz45.csv` is generated once by
`bench/make_energy_table.py` and loaded as is: no arithmetic happens at load time. Traffic volumes
(`bytes.` keys from `hwsim.sim.memory`) are not actions and are never priced.

Counting stays separate: `price` and `price_by_component` take hwsim's counts (`hwsim.sim.counting`) as
they are. `price_by_component` is the one place that says which component of the energy breakdown a
node's energy belongs to (`COMPONENT_OF_OP`; memory accesses are "memory" in the breakdown); the
report, the demo's sweep and the cost model all price through it.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping

from hwsim.sim.actions import ActionKey
from models.errors import UserError

DEFAULT_TABLE = Path(__file__).with_name("data") / "horowitz45.csv"
COLUMNS = ("action", "width", "technology", "pJ", "source", "interpolated")
# op type -> component of the energy breakdown; memory accesses of every op go to MEMORY.
COMPONENT_OF_OP: dict[str, str] = {
    "Linear": "linear",
    "DotAttention": "attention",
    "InhibitorAttention": "attention",
    "ScaleChannels": "attention",
    "LayerNorm": "normalisation",
    "Embed": "embedding",
    "Add": "residual",
}
MEMORY = "memory"
COMPONENTS = ("linear", "attention", "normalisation", "embedding", "residual", "other", MEMORY)


@dataclass(frozen=True)
class EnergyTable:
    """pJ per `action@width` for one technology, and where the figures came from."""

    technology: str
    pj: Mapping[str, float]
    path: str


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
        try:
            key = ActionKey(row["action"].strip(), row["width"].strip()).format()
        except ValueError as err:
            raise UserError(f"energy table {path}: row {lineno}: {err}; give an action and a width") from None
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


def _check_priced(keys: Iterable[str], table: EnergyTable | Mapping[str, float]) -> None:
    """Raise `UserError` naming every priced action key (traffic volumes aside) the table lacks."""
    pj = table.pj if isinstance(table, EnergyTable) else table
    missing = sorted({key for key in keys if ActionKey.parse(key).is_priced and key not in pj})
    if missing:
        where = table.path if isinstance(table, EnergyTable) else "the energy table"
        raise UserError(f"{where} has no entry for {', '.join(missing)}; add rows for these "
                        f"action@width keys (see bench/make_energy_table.py) or pass another --energy-table")


def price(counts: Mapping[str, int], table: EnergyTable | Mapping[str, float]) -> dict[str, float]:
    """pJ per action key: `count * table[key]`, in the order of `counts`, traffic volumes skipped.

    Raises `UserError` naming every action key the table lacks.
    """
    _check_priced(counts, table)
    pj = table.pj if isinstance(table, EnergyTable) else table
    return {key: counts[key] * pj[key] for key in counts if ActionKey.parse(key).is_priced}


def total_pj(counts: Mapping[str, int], table: EnergyTable | Mapping[str, float]) -> float:
    """sum(count * table[action]) over the priced actions."""
    return sum(price(counts, table).values())


@dataclass(frozen=True)
class NodeEnergy:
    """One node's priced counts: the component of its op and pJ per action key (in its counts' order)."""

    component: str
    pj: Mapping[str, float]

    def component_of(self, key: str) -> str:
        """Where `key`'s energy goes in the breakdown: MEMORY for a memory access, else the op's component."""
        return MEMORY if ActionKey.parse(key).is_memory else self.component

    @property
    def total_pj(self) -> float:
        return sum(self.pj.values())

    @property
    def arithmetic_pj(self) -> float:
        """The node's energy without its memory accesses."""
        return sum(e for key, e in self.pj.items() if not ActionKey.parse(key).is_memory)


def price_by_component(per_node: Mapping[str, Mapping[str, int]], node_op: Mapping[str, str],
                       table: EnergyTable | Mapping[str, float]) -> dict[str, NodeEnergy]:
    """Price every node's counts (`{node: {action@width: count}}`) and label them with the component
    of its op type (`node_op[node]`; `COMPONENT_OF_OP`, "other" for an op it does not name):
    `{node: NodeEnergy}` in the order of `per_node`. Callers sum in their own order.

    Raises `UserError` naming every action key the table lacks, over all nodes at once.
    """
    _check_priced((key for counts in per_node.values() for key in counts), table)
    return {node: NodeEnergy(COMPONENT_OF_OP.get(node_op[node], "other"), price(counts, table))
            for node, counts in per_node.items()}
