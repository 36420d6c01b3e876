"""Pricing is data: energy = sum(count * table[action]) exactly; the table covers every counted key
and its rows follow the rules in its header."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hwsim.sim.actions import ActionKey
from hwsim.cost.energy import COMPONENT_OF_OP, DEFAULT_TABLE, load_table, price, price_by_component, total_pj
from models.errors import UserError

ROOT = Path(__file__).parents[1]
GOLDEN = Path(__file__).parent / "golden"


def golden_counts(kind: str) -> dict[str, dict[str, int]]:
    return json.loads((GOLDEN / f"encoder_{kind}.json").read_text())["per_node"]


def test_measured_rows_as_given_and_interpolated_flagged():
    t = load_table()
    assert t.technology == "45nm"
    measured = {"add@8": 0.03, "add@32": 0.1, "mul@8x8": 0.2, "mul@32x32": 3.1, "fadd@16": 0.4, "fmul@16": 1.1,
                "fadd@32": 0.9, "fmul@32": 3.7, "read.sram@64": 10.0, "read.dram@64": 1300.0,
                "regwrite@1": 0.009}  # the last: Aladdin's 40 nm register bit (table header)
    for key, pj in measured.items():
        assert t.pj[key] == pj
    lines = [ln for ln in DEFAULT_TABLE.read_text().splitlines() if not ln.startswith("#")]
    rows = list(csv.DictReader(lines))
    flags = {f"{r['action']}@{r['width']}": r["interpolated"] for r in rows}
    assert {k for k, v in flags.items() if v == "no"} == set(measured)
    assert set(flags.values()) == {"yes", "no"}


def test_register_writes_priced_reads_free():
    t = load_table()
    for w in (1, 8, 32, 64):
        assert t.pj[f"regwrite@{w}"] == pytest.approx(w * t.pj["regwrite@1"]) and t.pj[f"regread@{w}"] == 0


def test_interpolation_rules():
    pj = load_table().pj
    assert pj["add@16"] == pytest.approx(0.06) and pj["add@64"] == pytest.approx(0.2)
    assert pj["cmp@16"] == pj["abs@16"] == pj["add@16"]
    assert pj["relu@16"] == pytest.approx(pj["add@16"] / 4) and pj["shiftc@16"] == 0.0
    assert pj["shift@16"] == pytest.approx(4 * pj["add@16"] / 4)     # barrel: ceil(log2 w) mux rows
    assert pj["shift@24"] == pytest.approx(5 * pj["add@24"] / 4)
    assert pj["div@16"] == pytest.approx(16 * pj["add@16"])
    assert pj["mul@16x16"] == pytest.approx(0.8) and pj["mul@64x64"] == pytest.approx(12.4)
    assert pj["mul@16x8"] == pytest.approx(0.4)
    assert pj["write.dram@64"] == 1300.0 and pj["read.sram@128"] == 20.0


def test_table_is_generated_not_hand_edited(tmp_path):
    out = tmp_path / "t.csv"
    subprocess.run([sys.executable, str(ROOT / "bench/make_energy_table.py"), "--out", str(out)], check=True,
                   capture_output=True)
    assert out.read_text() == DEFAULT_TABLE.read_text()


@pytest.mark.parametrize("kind", ["InhibitorAttention", "DotAttention"])
def test_energy_is_sum_of_count_times_table(kind):
    table = load_table()
    for counts in golden_counts(kind).values():
        priced = price(counts, table)
        expect = {k: c * table.pj[k] for k, c in counts.items() if not k.startswith("bytes.")}
        assert priced == expect
        assert total_pj(counts, table) == sum(expect.values())


def test_missing_entries_are_all_named():
    with pytest.raises(UserError) as err:
        price({"add@8": 3, "mul@70x8": 1, "read.sram@256": 2, "bytes.read.sram@8": 9}, {"add@8": 0.03})
    assert "mul@70x8" in str(err.value) and "read.sram@256" in str(err.value)
    assert "bytes." not in str(err.value) and "--energy-table" in str(err.value)


def test_bad_tables(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("action,width,technology,pJ\nadd,8,45nm,0.03\n")
    with pytest.raises(UserError, match="missing columns"):
        load_table(bad)
    bad.write_text("action,width,technology,pJ,source,interpolated\nadd,8,45nm,x,s,no\n")
    with pytest.raises(UserError, match="give a number"):
        load_table(bad)
    bad.write_text("action,width,technology,pJ,source,interpolated\nadd,8,45nm,1,s,no\nadd,8,7nm,0.5,s,no\n")
    with pytest.raises(UserError, match="choose one"):
        load_table(bad)
    assert load_table(bad, "7nm").pj == {"add@8": 0.5}
    with pytest.raises(UserError, match="not found"):
        load_table(tmp_path / "none.csv")
    bad.write_text("action,width,technology,pJ,source,interpolated\nadd,,45nm,1,s,no\n")
    with pytest.raises(UserError, match="row 2: width '' of an action key"):
        load_table(bad)


@pytest.mark.parametrize("kind", ["InhibitorAttention", "DotAttention"])
def test_action_keys_read_back_as_written(kind):
    """Every counted key and every table key parses to its parts and formats back to the same text."""
    keys = {k for counts in golden_counts(kind).values() for k in counts} | set(load_table().pj)
    for text in keys:
        key = ActionKey.parse(text)
        assert key.format() == text and ActionKey(key.action, key.width) == key
        assert key.is_priced == (not text.startswith("bytes."))
        assert key.is_memory == text.startswith(("read.", "write."))
        assert key.level == (text.split("@")[0].split(".")[-1] if "." in text.split("@")[0] else None)
    assert ActionKey.of("mul", 16, 8) == ActionKey.parse("mul@16x8") and ActionKey.parse("mul@16x8").bits == (16, 8)
    for bad in ("add", "@8", "add@", "add@8@9"):
        with pytest.raises(ValueError):
            ActionKey.parse(bad)


def test_price_by_component_labels_every_node_with_its_component():
    table = {"mul@8x8": 0.2, "add@32": 0.1, "read.dram@64": 1300.0, "write.sram@64": 10.0, "cmp@8": 0.03}
    per_node = {"fc": {"add@32": 7, "bytes.read.dram@8": 24, "mul@8x8": 7, "read.dram@64": 3},
                "attn": {"cmp@8": 5, "write.sram@64": 2},
                "odd": {"add@32": 1}}
    node_op = {"fc": "Linear", "attn": "InhibitorAttention", "odd": "Gather"}
    priced = price_by_component(per_node, node_op, table)
    assert list(priced) == ["fc", "attn", "odd"]
    assert [e.component for e in priced.values()] == ["linear", "attention", "other"]
    assert priced["fc"].pj == {"add@32": 7 * 0.1, "mul@8x8": 7 * 0.2, "read.dram@64": 3 * 1300.0}
    assert priced["fc"].total_pj == 7 * 0.1 + 7 * 0.2 + 3 * 1300.0
    assert priced["fc"].arithmetic_pj == 7 * 0.1 + 7 * 0.2
    assert priced["attn"].component_of("write.sram@64") == "memory" and priced["attn"].component_of("cmp@8") == "attention"
    assert priced["attn"].arithmetic_pj == 5 * 0.03
    with pytest.raises(UserError) as err:
        price_by_component({**per_node, "ln": {"div@32": 1}, "emb": {"read.sram@64": 1}},
                           {**node_op, "ln": "LayerNorm", "emb": "Embed"}, table)
    assert "div@32, read.sram@64" in str(err.value)  # every node's missing keys in one message


@pytest.mark.parametrize("kind", ["InhibitorAttention", "DotAttention"])
def test_price_by_component_is_price_per_node(kind):
    """The golden encoder: each node priced as `price` prices it, under its op's component."""
    table = load_table()
    golden = json.loads((GOLDEN / f"encoder_{kind}.json").read_text())
    priced = price_by_component(golden["per_node"], golden["node_op"], table)
    for node, counts in golden["per_node"].items():
        assert priced[node].pj == price(counts, table)
        assert priced[node].component == COMPONENT_OF_OP.get(golden["node_op"][node], "other")
    assert {e.component for e in priced.values()} >= {"linear", "attention", "normalisation", "embedding"}
