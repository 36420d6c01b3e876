"""Memory and area tables for mapping-aware cost: data files read as is, one documented interpolation.

`hwsim/cost/data/memory45.csv` (from `bench/make_memory_table.py`, CACTI 7 at 45 nm, low-standby-power
cells) holds SRAM read/write pJ per access of a word, array area and leakage per (size, word width) up to
the bank limit (its largest size), DRAM pJ per bit per standard, and on-chip wire pJ per bit per mm. `hwsim/cost/data/area45.csv` (from `bench/make_area_table.py`) holds um^2 per `action@width`
unit, keyed like the energy table. Comment lines (`#`) state each table's rules and sources.

SRAM sizes or word widths between rows are interpolated by `MemoryTable.sram` (log-log in size between
the neighbouring rows of one word width, then linear in word width between neighbouring widths); every
other figure is a row of the file. An SRAM above the bank limit is banked (`MemoryTable.sram`: whole
banks of the largest row plus a wire term). Anything outside a table's range is a `UserError`, never an
extrapolation.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from hwsim.sim.actions import ActionKey
from models.errors import UserError

TABLES = Path(__file__).with_name("data")
DEFAULT_MEMORY_TABLE = TABLES / "memory45.csv"
DEFAULT_AREA_TABLE = TABLES / "area45.csv"
MEMORY_COLUMNS = ("kind", "size_bytes", "word_bits", "technology", "read_pJ", "write_pJ", "area_mm2",
                  "leakage_mW", "source", "interpolated")
AREA_COLUMNS = ("action", "width", "technology", "um2", "source", "interpolated")
SRAM_FIGURES = ("read_pJ", "write_pJ", "area_mm2", "leakage_mW")
DRAM_PREFIX = "dram."
WIRE_KIND = "wire"
MAX_BANKS = 64  # the sqrt(area) wire rule is a single-level H-tree; beyond this a NoC model is needed


@dataclass(frozen=True)
class SramCost:
    """One SRAM macro: pJ per access of `word_bits`, whole-array area and standby leakage, in `banks` banks."""

    read_pj: float
    write_pj: float
    area_mm2: float
    leakage_mw: float
    banks: int = 1


def _geometric(a: SramCost, b: SramCost, t: float) -> SramCost:
    """a^(1-t) * b^t per figure: linear in log-log when t is the log-size fraction (a's bank count)."""
    return SramCost(*(x ** (1 - t) * y ** t for x, y in zip(_figures(a), _figures(b))), banks=a.banks)


def _linear(a: SramCost, b: SramCost, t: float) -> SramCost:
    """a + t * (b - a) per figure (a's bank count: both neighbours are taken at one size)."""
    return SramCost(*(x + t * (y - x) for x, y in zip(_figures(a), _figures(b))), banks=a.banks)


def _figures(cost: SramCost) -> tuple[float, float, float, float]:
    return cost.read_pj, cost.write_pj, cost.area_mm2, cost.leakage_mw


def _neighbours(values: list[int], x: int) -> tuple[int, int]:
    """The table values just below and just above x (x strictly inside the sorted `values`)."""
    return max(v for v in values if v < x), min(v for v in values if v > x)


@dataclass(frozen=True)
class MemoryTable:
    """SRAM costs per (size_bytes, word_bits), DRAM pJ per bit per standard and wire pJ per bit per mm."""

    technology: str
    path: str
    sram_rows: Mapping[tuple[int, int], SramCost]
    dram_pj: Mapping[str, float]
    wire_pj_per_bit_mm: float | None = None

    @property
    def bank_bytes(self) -> int:
        """The bank limit: the largest SRAM size the table holds (0 for a table without SRAM rows)."""
        return max((s for s, _ in self.sram_rows), default=0)

    def sram(self, size_bytes: int, word_bits: int) -> SramCost:
        """The row for (size, word), else an interpolation between rows.

        Rule: at a word width the table holds, log-log in size between the neighbouring sizes
        (each figure = a^(1-t) * b^t with t = log(S/S_lo) / log(S_hi/S_lo)); at another word width,
        linear in word width between the two neighbouring widths, each taken at this size. Interpolated
        figures lie between the rows around them, and rows come back exactly. Above the bank limit
        (`bank_bytes`), `banked` prices whole banks. Raises `UserError` for a size or width outside the
        table's rows (no extrapolation) or above `MAX_BANKS` banks.
        """
        words = sorted({w for _, w in self.sram_rows})
        if word_bits in words:
            return self._sram_at_word(size_bytes, word_bits)
        if not words or not words[0] < word_bits < words[-1]:
            raise UserError(f"memory table {self.path}: SRAM word width {word_bits} bits is outside the "
                            f"table's widths {words}; choose a width in that range or add rows")
        lo, hi = _neighbours(words, word_bits)
        t = (word_bits - lo) / (hi - lo)
        return _linear(self._sram_at_word(size_bytes, lo), self._sram_at_word(size_bytes, hi), t)

    def banked(self, size_bytes: int, word_bits: int) -> SramCost:
        """An SRAM above the bank limit, at a word width the table holds, built from whole banks.

        Rule: banks = ceil(size / bank_bytes), each the table's `bank_bytes` row (a partly used last bank
        is still a whole macro, so cost never falls as size grows); area and leakage = banks x the bank's;
        read and write pJ = one bank's access + word_bits x `wire_pj_per_bit_mm` x sqrt(total area), the
        Manhattan route from the array's centre to its farthest bank (an H-tree's longest branch).
        """
        bank = self.sram_rows.get((self.bank_bytes, word_bits))
        banks = -(-size_bytes // self.bank_bytes)
        if bank is None or self.wire_pj_per_bit_mm is None:
            raise UserError(f"memory table {self.path}: cannot bank a {size_bytes}-byte SRAM at {word_bits}-bit "
                            f"words: it needs a {self.bank_bytes}-byte row at that width and a `wire` row "
                            f"(pJ per bit per mm); choose a size up to {self.bank_bytes} bytes or add those rows")
        if banks > MAX_BANKS:
            raise UserError(f"memory table {self.path}: an SRAM of {size_bytes} bytes needs {banks} banks of "
                            f"{self.bank_bytes} bytes, over the {MAX_BANKS} the one-level wire rule covers; "
                            f"choose a size up to {MAX_BANKS * self.bank_bytes} bytes or model the network on chip")
        area = banks * bank.area_mm2
        wire = word_bits * self.wire_pj_per_bit_mm * math.sqrt(area)
        return SramCost(bank.read_pj + wire, bank.write_pj + wire, area, banks * bank.leakage_mw, banks)

    def _sram_at_word(self, size_bytes: int, word_bits: int) -> SramCost:
        if size_bytes > self.bank_bytes > 0:
            return self.banked(size_bytes, word_bits)
        if (size_bytes, word_bits) in self.sram_rows:
            return self.sram_rows[(size_bytes, word_bits)]
        sizes = sorted(s for s, w in self.sram_rows if w == word_bits)
        if not sizes[0] < size_bytes < sizes[-1]:
            raise UserError(f"memory table {self.path}: no SRAM of {size_bytes} bytes at {word_bits}-bit words; "
                            f"rows for that width span {sizes[0]}..{sizes[-1]} bytes; choose a size in that "
                            f"range or add rows (bench/make_memory_table.py)")
        lo, hi = _neighbours(sizes, size_bytes)
        t = math.log(size_bytes / lo) / math.log(hi / lo)
        return _geometric(self.sram_rows[(lo, word_bits)], self.sram_rows[(hi, word_bits)], t)

    def dram_pj_per_bit(self, kind: str) -> float:
        """pJ per bit read from DRAM of this standard (`DDR3`, `HBM2`, ... as `dram_kinds()` lists)."""
        if kind not in self.dram_pj:
            raise UserError(f"memory table {self.path} has no DRAM kind {kind!r}; known kinds: "
                            f"{', '.join(self.dram_kinds())}; pick one or add a sourced `dram.{kind}` row")
        return self.dram_pj[kind]

    def dram_kinds(self) -> tuple[str, ...]:
        """The DRAM standards the table prices, in file order."""
        return tuple(self.dram_pj)


@dataclass(frozen=True)
class AreaTable:
    """um^2 per `action@width` unit (`add@8`, `mul@8x8`, `reg@1`) for one technology."""

    technology: str
    um2: Mapping[str, float]
    path: str


def _read_rows(path: Path, columns: tuple[str, ...], what: str) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for each data row of a `#`-commented CSV; `UserError` if absent or short of columns."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{what} table {path} not found; pass an existing CSV "
                        f"(the packaged one is {TABLES / path.name})") from None
    numbered = [(n, ln) for n, ln in enumerate(text.splitlines(), start=1) if ln.strip() and not ln.startswith("#")]
    reader = csv.DictReader(ln for _, ln in numbered)
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise UserError(f"{what} table {path}: missing columns {missing}; expected {list(columns)}")
    return [(numbered[i + 1][0], row) for i, row in enumerate(reader)]


def _figure(path: Path, lineno: int, row: dict[str, str], column: str) -> float:
    """A non-negative number from `row[column]`; `UserError` naming line and column otherwise."""
    try:
        value = float(row[column])
    except (TypeError, ValueError):
        raise UserError(f"{path}: line {lineno} has {column} {row[column]!r}; give a number") from None
    if not value >= 0:
        raise UserError(f"{path}: line {lineno} has negative or NaN {column} {value}; give a figure >= 0")
    return value


def _size(path: Path, lineno: int, row: dict[str, str], column: str) -> int:
    """A positive integer from `row[column]`; `UserError` otherwise."""
    text = (row[column] or "").strip()
    if not text.isdigit() or int(text) <= 0:
        raise UserError(f"{path}: line {lineno} has {column} {row[column]!r}; give a positive integer")
    return int(text)


def _one_technology(by_tech: dict, technology: str | None, path: Path, what: str):
    """The rows of `technology` (or of the only technology when None); `UserError` otherwise."""
    if technology is None:
        if len(by_tech) != 1:
            raise UserError(f"{what} table {path} holds technologies {sorted(by_tech)}; choose one")
        technology = next(iter(by_tech))
    if technology not in by_tech:
        raise UserError(f"{what} table {path} has no rows for technology {technology!r}; it holds {sorted(by_tech)}")
    return technology, by_tech[technology]


def load_memory_table(path: str | Path | None = None, technology: str | None = None) -> MemoryTable:
    """Read a memory table (default: the packaged CACTI 45 nm table) for one technology.

    Rows of kind `sram` need positive integer `size_bytes`, `word_bits` and non-negative read/write pJ,
    area and leakage; rows of kind `dram.<standard>` need a non-negative `read_pJ` (pJ per bit); at most
    one row of kind `wire` gives `read_pJ` = pJ per bit per mm of on-chip wire (used for banking).
    Raises `UserError` for a missing file or column, a bad figure, an unknown kind, a duplicate row,
    or a technology the file does not hold.
    """
    path = Path(path) if path is not None else DEFAULT_MEMORY_TABLE
    by_tech: dict[str, tuple[dict[tuple[int, int], SramCost], dict[str, float], dict[str, float]]] = {}
    for lineno, row in _read_rows(path, MEMORY_COLUMNS, "memory"):
        sram, dram, wire = by_tech.setdefault(row["technology"].strip(), ({}, {}, {}))
        kind = row["kind"].strip()
        if kind == WIRE_KIND:
            if wire:
                raise UserError(f"{path}: line {lineno} repeats the wire row; keep one")
            wire[WIRE_KIND] = _figure(path, lineno, row, "read_pJ")
            continue
        if kind == "sram":
            key = (_size(path, lineno, row, "size_bytes"), _size(path, lineno, row, "word_bits"))
            if key in sram:
                raise UserError(f"{path}: line {lineno} repeats SRAM {key[0]} bytes x {key[1]} bits; keep one row")
            sram[key] = SramCost(*(_figure(path, lineno, row, c) for c in SRAM_FIGURES))
        elif kind.startswith(DRAM_PREFIX) and len(kind) > len(DRAM_PREFIX):
            name = kind[len(DRAM_PREFIX):]
            if name in dram:
                raise UserError(f"{path}: line {lineno} repeats DRAM kind {name!r}; keep one row")
            dram[name] = _figure(path, lineno, row, "read_pJ")
        else:
            raise UserError(f"{path}: line {lineno} has kind {kind!r}; use 'sram', 'dram.<standard>' or 'wire'")
    technology, (sram, dram, wire) = _one_technology(by_tech, technology, path, "memory")
    return MemoryTable(technology, str(path), MappingProxyType(sram), MappingProxyType(dram), wire.get(WIRE_KIND))


def load_area_table(path: str | Path | None = None, technology: str | None = None) -> AreaTable:
    """Read an area table (default: the packaged 45 nm table) for one technology.

    Raises `UserError` for a missing file or column, a non-numeric or negative um2, a duplicate
    `action@width` key, or a technology the file does not hold.
    """
    path = Path(path) if path is not None else DEFAULT_AREA_TABLE
    by_tech: dict[str, dict[str, float]] = {}
    for lineno, row in _read_rows(path, AREA_COLUMNS, "area"):
        try:
            key = ActionKey(row["action"].strip(), row["width"].strip()).format()
        except ValueError as err:
            raise UserError(f"{path}: line {lineno}: {err}; give an action and a width") from None
        rows = by_tech.setdefault(row["technology"].strip(), {})
        if key in rows:
            raise UserError(f"{path}: line {lineno} repeats {key} for technology {row['technology']!r}; keep one row")
        rows[key] = _figure(path, lineno, row, "um2")
    technology, rows = _one_technology(by_tech, technology, path, "area")
    return AreaTable(technology, MappingProxyType(rows), str(path))
