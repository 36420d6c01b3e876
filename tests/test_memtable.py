"""Memory and area tables: packaged rows, interpolation, regeneration by the bench scripts, bad input."""
from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from hwsim.cost.tables import (DEFAULT_AREA_TABLE, DEFAULT_MEMORY_TABLE, SramCost, load_area_table,
                               load_memory_table)
from models.errors import UserError

ROOT = Path(__file__).parents[1]
HOROWITZ_8K_READ_PJ = 10.0  # 8 KB SRAM, 64-bit read, Horowitz ISSCC 2014 45 nm
HOROWITZ_FACTOR = 2.0  # CACTI's figure must lie within [10 / 2, 10 * 2] pJ
MEMORY_HEADER = "kind,size_bytes,word_bits,technology,read_pJ,write_pJ,area_mm2,leakage_mW,source,interpolated\n"
AREA_HEADER = "action,width,technology,um2,source,interpolated\n"


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(ln for ln in path.read_text(encoding="utf-8").splitlines() if not ln.startswith("#")))


def _write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _has_cacti() -> bool:
    """zigzag-dse's CACTI binary and energydram (the `tables` extra), which regenerating the table needs."""
    spec = importlib.util.find_spec("zigzag")
    return (spec is not None and (Path(spec.origin).parent / "cacti/cacti_master/cacti").exists()
            and importlib.util.find_spec("energydram") is not None)


def test_memory_rows_come_back_exactly():
    table = load_memory_table()
    assert table.technology == "45nm" and table.path == str(DEFAULT_MEMORY_TABLE)
    rows = _rows(DEFAULT_MEMORY_TABLE)
    for row in rows:
        if row["kind"] == "sram":
            cost = table.sram(int(row["size_bytes"]), int(row["word_bits"]))
            assert cost == SramCost(float(row["read_pJ"]), float(row["write_pJ"]), float(row["area_mm2"]),
                                    float(row["leakage_mW"]))
        elif row["kind"] == "wire":
            assert table.wire_pj_per_bit_mm == float(row["read_pJ"])
        else:
            assert table.dram_pj_per_bit(row["kind"].removeprefix("dram.")) == float(row["read_pJ"])
    assert table.dram_kinds() == tuple(r["kind"].removeprefix("dram.") for r in rows if r["kind"].startswith("dram."))
    assert set(table.dram_kinds()) >= {"LPDDR4", "DDR4", "DDR3", "HBM2"}


def test_sram_rows_are_low_standby_power():
    table = load_memory_table()
    assert all("itrs-lstp" in r["source"] for r in _rows(DEFAULT_MEMORY_TABLE) if r["kind"] == "sram")
    leak = table.sram(512 * 1024, 64).leakage_mw
    print(f"512 KiB x 64 b LSTP leakage {leak:.3f} mW")
    assert 0 < leak < 5  # itrs-hp gave 614 mW; an edge SRAM leaks well under a few mW


def test_dram_lpddr4_below_ddr3_and_sourced():
    table, rows = load_memory_table(), _rows(DEFAULT_MEMORY_TABLE)
    assert table.dram_pj_per_bit("LPDDR4") < table.dram_pj_per_bit("DDR3")
    assert all(r["source"] for r in rows if r["kind"] != "sram")
    assert all("energydram" in r["source"] for r in rows if r["kind"] in ("dram.LPDDR4", "dram.DDR4", "dram.DDR3"))


def test_large_sram_is_whole_banks_plus_wire():
    table = load_memory_table()
    limit = table.bank_bytes
    assert limit == 2**20 and table.wire_pj_per_bit_mm > 0
    bank, big = table.sram(limit, 64), table.sram(16 * 2**20, 64)
    assert big.banks == 16 and bank.banks == 1
    assert big.area_mm2 == pytest.approx(16 * bank.area_mm2) and big.leakage_mw == pytest.approx(16 * bank.leakage_mw)
    wire = 64 * table.wire_pj_per_bit_mm * (16 * bank.area_mm2) ** 0.5
    assert big.read_pj == pytest.approx(bank.read_pj + wire) and big.write_pj == pytest.approx(bank.write_pj + wire)
    assert table.sram(limit + 1, 64) == table.sram(2 * limit, 64)  # a partly used bank is a whole macro
    assert table.sram(24 * 2**20, 96).banks == 24


@pytest.mark.parametrize("word", [64, 128, 256, 512])
def test_banked_sram_is_monotone_in_size(word):
    table = load_memory_table()
    sizes = [table.bank_bytes * k // 2 for k in range(2, 129)]
    costs = [table.sram(s, word) for s in sizes]
    for field in ("read_pj", "write_pj", "area_mm2", "leakage_mw"):
        values = [getattr(c, field) for c in costs]
        assert all(y >= x for x, y in zip(values, values[1:])), field


def test_banking_needs_a_wire_row(tmp_path):
    path = _write(tmp_path, MEMORY_HEADER + "sram,1024,64,45nm,1,1,1,1,s,no\n")
    assert load_memory_table(path).sram(1024, 64).banks == 1
    with pytest.raises(UserError, match="wire"):
        load_memory_table(path).sram(4096, 64)


def test_sram_8k_read_near_horowitz():
    read = load_memory_table().sram(8 * 1024, 64).read_pj
    print(f"8 KiB SRAM, 64-bit read: table {read:.2f} pJ, Horowitz {HOROWITZ_8K_READ_PJ} pJ, "
          f"ratio {read / HOROWITZ_8K_READ_PJ:.2f}")
    assert HOROWITZ_8K_READ_PJ / HOROWITZ_FACTOR <= read <= HOROWITZ_8K_READ_PJ * HOROWITZ_FACTOR


def test_size_interpolation_lies_between_neighbouring_rows():
    table = load_memory_table()
    for word in (64, 128, 256, 512):
        sizes = sorted(s for s, w in table.sram_rows if w == word)
        for lo, hi in zip(sizes, sizes[1:]):
            points = [table.sram(s, word) for s in (lo, (lo + hi) // 2, (3 * lo + hi) // 4 + 1, hi)]
            for field in ("read_pj", "write_pj", "area_mm2", "leakage_mw"):
                a, b = getattr(points[0], field), getattr(points[-1], field)
                values = [getattr(p, field) for p in points]
                assert all(min(a, b) * (1 - 1e-12) <= v <= max(a, b) * (1 + 1e-12) for v in values)
            reads = [table.sram(s, word).read_pj for s in range(lo, hi + 1, max(1, (hi - lo) // 16))]
            step = 1 if points[-1].read_pj >= points[0].read_pj else -1
            assert all(step * (y - x) >= -1e-12 for x, y in zip(reads, reads[1:]))


def test_size_interpolation_is_log_log():
    table = load_memory_table()
    lo, hi, mid = table.sram(4096, 64), table.sram(8192, 64), table.sram(5793, 64)  # 5793 ~ 4096 * sqrt(2)
    assert mid.read_pj == pytest.approx((lo.read_pj * hi.read_pj) ** 0.5, rel=1e-4)


def test_word_interpolation_is_linear_and_rows_exact():
    table = load_memory_table()
    a, b, mid = table.sram(65536, 64), table.sram(65536, 128), table.sram(65536, 96)
    assert mid.read_pj == pytest.approx((a.read_pj + b.read_pj) / 2)
    assert table.sram(65536, 128) == table.sram_rows[(65536, 128)]


@pytest.mark.parametrize("size, word", [(128, 64), (128 * 2**20, 64), (8192, 32), (8192, 1024), (256, 128), (256, 96)])
def test_sram_outside_rows_is_a_user_error(size, word):
    with pytest.raises(UserError, match="choose"):
        load_memory_table().sram(size, word)


def test_unknown_dram_kind_names_known_kinds():
    with pytest.raises(UserError, match="LPDDR4.*DDR3.*HBM2"):
        load_memory_table().dram_pj_per_bit("GDDR7")


def test_area_rows_come_back_exactly():
    table = load_area_table()
    assert table.technology == "45nm"
    for row in _rows(DEFAULT_AREA_TABLE):
        assert table.um2[f"{row['action']}@{row['width']}"] == float(row["um2"])
    anchors = ("add@8", "add@16", "add@32", "mul@8x8", "mul@32x32", "reg@1")
    assert [table.um2[key] for key in anchors] == [36, 67, 137, 282, 3495, 4.522]
    for w in range(1, 64):
        assert table.um2[f"add@{w}"] < table.um2[f"add@{w + 1}"] and f"reg@{w}" in table.um2
    for a in range(1, 33):
        for b in range(1, a + 1):
            assert f"mul@{a}x{b}" in table.um2


def test_area_table_equals_bench_output(tmp_path):
    out = tmp_path / "area45.csv"
    subprocess.run([sys.executable, str(ROOT / "bench/make_area_table.py"), "--out", str(out)], check=True,
                   capture_output=True)
    assert out.read_text(encoding="utf-8") == DEFAULT_AREA_TABLE.read_text(encoding="utf-8")


@pytest.mark.skipif(not _has_cacti(), reason="zigzag-dse's CACTI binary or energydram (extra `tables`) is not installed")
def test_memory_table_equals_bench_output(tmp_path):
    out = tmp_path / "memory45.csv"
    done = subprocess.run([sys.executable, str(ROOT / "bench/make_memory_table.py"), "--out", str(out)],
                          check=True, capture_output=True, text=True, cwd=ROOT)
    print(done.stdout)
    assert out.read_text(encoding="utf-8") == DEFAULT_MEMORY_TABLE.read_text(encoding="utf-8")


@pytest.mark.parametrize("loader", [load_memory_table, load_area_table])
def test_missing_file(loader, tmp_path):
    with pytest.raises(UserError, match="not found"):
        loader(tmp_path / "absent.csv")


@pytest.mark.parametrize("loader, text", [
    (load_memory_table, "kind,size_bytes,word_bits,technology,read_pJ\nsram,1024,64,45nm,1\n"),
    (load_area_table, "action,width,technology,pJ\nadd,8,45nm,1\n"),
])
def test_missing_column(loader, text, tmp_path):
    with pytest.raises(UserError, match="missing columns"):
        loader(_write(tmp_path, text))


@pytest.mark.parametrize("line, match", [
    ("sram,1024,64,45nm,abc,1,1,1,s,no", "give a number"),
    ("sram,1024,64,45nm,-1,1,1,1,s,no", "negative"),
    ("sram,1024,64,45nm,1,1,,1,s,no", "give a number"),
    ("sram,0,64,45nm,1,1,1,1,s,no", "positive integer"),
    ("sram,1k,64,45nm,1,1,1,1,s,no", "positive integer"),
    ("dram.DDR4,0,1,45nm,nan,nan,,,s,no", "negative or NaN"),
    ("flash,0,1,45nm,1,1,,,s,no", "use 'sram', 'dram"),
    ("wire,0,1,45nm,-1,-1,,,s,no", "negative"),
])
def test_bad_memory_row(line, match, tmp_path):
    with pytest.raises(UserError, match=match):
        load_memory_table(_write(tmp_path, "# comment\n" + MEMORY_HEADER + line + "\n"))


@pytest.mark.parametrize("rows, match", [
    ("sram,1024,64,45nm,1,1,1,1,s,no\nsram,1024,64,45nm,2,2,2,2,s,no\n", "repeats SRAM 1024 bytes x 64 bits"),
    ("dram.HBM2,0,1,45nm,3.9,3.9,,,s,no\ndram.HBM2,0,1,45nm,4,4,,,s,no\n", "repeats DRAM kind 'HBM2'"),
    ("wire,0,1,45nm,0.1,0.1,,,s,no\nwire,0,1,45nm,0.2,0.2,,,s,no\n", "repeats the wire row"),
])
def test_duplicate_memory_rows(rows, match, tmp_path):
    with pytest.raises(UserError, match=match):
        load_memory_table(_write(tmp_path, MEMORY_HEADER + rows))


def test_bad_area_rows(tmp_path):
    with pytest.raises(UserError, match="repeats add@8"):
        load_area_table(_write(tmp_path, AREA_HEADER + "add,8,45nm,36,s,no\nadd,8,45nm,37,s,no\n"))
    with pytest.raises(UserError, match="negative"):
        load_area_table(_write(tmp_path, AREA_HEADER + "add,8,45nm,-36,s,no\n"))
    with pytest.raises(UserError, match="give a number"):
        load_area_table(_write(tmp_path, AREA_HEADER + "add,8,45nm,big,s,no\n"))


@pytest.mark.parametrize("loader, header, row", [
    (load_memory_table, MEMORY_HEADER, "sram,1024,64,{},1,1,1,1,s,no\n"),
    (load_area_table, AREA_HEADER, "add,8,{},36,s,no\n"),
])
def test_technology_choice(loader, header, row, tmp_path):
    path = _write(tmp_path, header + row.format("45nm") + row.format("22nm"))
    with pytest.raises(UserError, match="choose one"):
        loader(path)
    with pytest.raises(UserError, match="no rows for technology '7nm'"):
        loader(path, technology="7nm")
    assert loader(path, technology="22nm").technology == "22nm"


def test_packaged_tables_are_package_data():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"hwsim.cost" = ["data/*.csv"' in text
    assert DEFAULT_MEMORY_TABLE.parent == DEFAULT_AREA_TABLE.parent == ROOT / "hwsim/cost/data"
