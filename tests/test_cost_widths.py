"""Width-true hardware (hwsim/cost/widths.py): a 4-bit model on PEs built for 4 bits, checked by closed forms
from the tables and by ZigZag standalone; 8-bit figures unchanged; widths the hardware cannot hold refused."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import yaml

from hwsim.app.cli import main
from hwsim.cost.model import MappedCost, _arithmetic_counts, tile_homes, workload_at
from hwsim.cost.pricing import resolve_accelerator
from hwsim.cost.scenario import PACKAGED, homes_accelerator, load_scenario, packaged_names, pinned_names
from hwsim.cost.stages import GemmStage, gemm_stages
from hwsim.cost.table import load_tables, scenario_costs
from hwsim.cost.widths import ArrayWidths, array_widths, packed_bytes, pe_area_um2, sized_accelerator
from hwsim.cost.zigzag_map import ZIGZAG_OPTIONS, map_stage, summarise_cme, workload
from hwsim.sim.graph import load_plan
from models.errors import UserError

TILE4 = GemmStage("l0.q", "linear", 1, 128, 64, 64, 4, 4, 14, 4, True)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HWSIM_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tables():
    return load_tables()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny random encoders, dot and inhibitor, at W4A4 and W8A8 (`hwsim export --init random`)."""
    from export.pipeline import export_quant_model
    from models.config import EncoderConfig
    from quant.qat.model import random_quant_model

    root = tmp_path_factory.mktemp("width_models")
    cfg = EncoderConfig(vocab_size=50, hidden=32, layers=1, heads=2, ffn=64, max_position=32, num_labels=2)
    paths = {}
    for bits in (4, 8):
        for variant in ("dot", "inhibitor"):
            path = root / f"{variant}_w{bits}.onnx"
            export_quant_model(random_quant_model(cfg, variant, bits, 0, calib_batches=1, calib_len=8), path)
            paths[(variant, bits)] = str(path)
    return paths


def _sized(scenario, widths: ArrayWidths, tables) -> dict:
    return resolve_accelerator(sized_accelerator(scenario.accelerator, widths), scenario, tables.memory,
                               tables.energy.pj, tables.area.um2)


def test_table_rows_of_a_4_bit_pe_follow_the_headers_rules(tables):
    """The 4x4 multiplier and 4-bit register rows are the tables' stated interpolation rules."""
    pj, um2 = tables.energy.pj, tables.area.um2
    assert pj["mul@4x4"] == pj["mul@8x8"] * (4 * 4) / (8 * 8)           # proportional to A*B from 8x8
    assert um2["mul@4x4"] == um2["mul@8x8"] * (4 * 4) / (8 * 8)
    assert pj["regwrite@4"] == 4 * pj["regwrite@1"] and um2["reg@4"] == 4 * um2["reg@1"]


def test_a_4_bit_model_is_priced_on_4_bit_pes(models, tables):
    """Closed forms at W4A4 on the edge array: PEs of 4x4 multipliers and 32-bit accumulators, per-PE
    registers of 4-bit operands, every MAC a 4x4 multiply of the energy table."""
    scenario = load_scenario("edge")
    mc = MappedCost(scenario, tables)
    work = workload_at(load_plan(models[("dot", 4)]), 16)
    assert mc.widths(work) == {"array": ArrayWidths(4, 4, 32), "attention unit": None}
    array = mc.arrays(work)["array"]
    assert array == _sized(scenario, ArrayWidths(4, 4, 32), tables)
    mems = array["memories"]
    assert [mems[m]["size"] for m in ("w_reg", "i_reg", "o_reg")] == [32 * 4 // 8, 16 * 4 // 8, 64]
    um2 = tables.area.um2
    area = mc.area(work)
    pes = 32 * 32
    assert area["array arithmetic"] == pes * ((um2["mul@4x4"] + um2["add@32"]) / 1e6)
    registers = 0.0
    for bits in (16, 8, 64):
        registers += bits * um2["reg@1"] / 1e6 * pes
    assert area["registers"] == registers
    for site in work.sites:
        for st in gemm_stages(site, work.acc_bits.get(site.name)):
            counts = _arithmetic_counts(site)
            assert (st.bits_i, st.bits_w) == (4, 4)
            if st.kind == "linear":
                assert counts["mul@4x4"] == st.mac_sites


def test_register_traffic_of_a_4_bit_stage_is_in_4_bit_words(tables):
    """The same Linear tile at 4 and at 8 bits, each on PEs of its width: the same register accesses,
    each of a port half as wide, so exactly half the energy; the weight registers are written once per
    weight: reduce x cols x 4 bits / port bits accesses of port bits x regwrite@1."""
    scenario = load_scenario("edge")
    out = {}
    for bits in (4, 8):
        tile = GemmStage("l0.q", "linear", 1, 128, 64, 64, bits, bits, 14, bits, True)
        acc = _sized(scenario, ArrayWidths(bits, bits, 32), tables)
        homed = homes_accelerator(acc, tile_homes(tile, scenario, acc, lambda t: scenario.activations_home))
        out[bits] = (map_stage(tile, homed, scenario.mapping, 1024), homed)
    (m4, acc4), (m8, _) = out[4], out[8]
    port = acc4["memories"]["w_reg"]["ports"][0]["bandwidth_max"]
    assert port == 16 * 4 // 8
    w = m4.by_operand["W"]["w_reg"]
    assert w["write"] == TILE4.reduce * TILE4.cols * 4 / port
    assert w["pJ"] == w["write"] * (port * tables.energy.pj["regwrite@1"])
    for op, level in (("W", "w_reg"), ("I", "i_reg")):
        four, eight = m4.by_operand[op][level], m8.by_operand[op][level]
        assert (four["read"], four["write"]) == (eight["read"], eight["write"])
        assert 2 * four["pJ"] == eight["pJ"]


@pytest.mark.parametrize("name", ["edge@4", "edge_same_area"])
def test_model_figure_equals_zigzag_standalone_at_4_bits(name, tables, tmp_path):
    """A 4-bit GEMM stage with its operand precisions from the stage: hwsim's mapping of it on the
    array built for 4 bits (and on the same-area array with its rewritten mapping) equals ZigZag run
    standalone on the resolved files."""
    from zigzag.api import get_hardware_performance_zigzag

    scenario = load_scenario(name)
    acc = _sized(scenario, ArrayWidths(4, 4, 32), tables)
    homed = homes_accelerator(acc, tile_homes(TILE4, scenario, acc, lambda t: scenario.activations_home))
    path = tmp_path / "acc.yaml"
    path.write_text(yaml.safe_dump(homed, sort_keys=False), encoding="utf-8")
    pes = math.prod(acc["operational_array"]["sizes"])
    ours = map_stage(TILE4, homed, scenario.mapping, pes)
    assert workload(TILE4)[0]["operand_precision"] == {"I": 4, "W": 4, "O": 14, "O_final": 4}
    _, latency, cmes = get_hardware_performance_zigzag(
        workload(TILE4), str(path), scenario.mapping, opt=ZIGZAG_OPTIONS["opt"], lpf_limit=ZIGZAG_OPTIONS["lpf_limit"],
        nb_spatial_mappings_generated=ZIGZAG_OPTIONS["nb_spatial_mappings_generated"],
        dump_folder=str(tmp_path / "dump"), loma_show_progress_bar=False)
    logging.disable(logging.NOTSET)
    theirs = summarise_cme(cmes[0][1][0][0], pes)
    assert ours.cycles == latency == theirs.cycles
    assert ours.levels == theirs.levels and ours.by_operand == theirs.by_operand


def test_same_area_array_by_its_rule(tables):
    """edge_same_area: floor(PEs x PE area at 8 bits / PE area at 4 bits) PEs, whole multiples of 8
    columns, from the area table's multiplier, adder and register bit."""
    um2 = tables.area.um2
    edge, same = load_scenario("edge"), load_scenario("edge_same_area")
    a8 = um2["mul@8x8"] + um2["add@32"] + (32 + 16 + 64) * um2["reg@1"]
    a4 = um2["mul@4x4"] + um2["add@32"] + (16 + 8 + 64) * um2["reg@1"]
    assert pe_area_um2(edge.accelerator, ArrayWidths(8, 8, 32), um2) == a8
    assert pe_area_um2(edge.accelerator, ArrayWidths(4, 4, 32), um2) == a4
    columns = math.floor(32 * 32 * a8 / a4) // 32 // 8 * 8
    assert same.accelerator["operational_array"]["sizes"] == [columns, 32]
    assert same.pe_bits == (4, 4) and "edge_same_area" in pinned_names() and "edge_same_area" not in packaged_names()
    unroll = yaml.safe_load(Path(same.mapping).read_text(encoding="utf-8"))[0]["spatial_mapping"]
    assert unroll == {"D1": [f"K, {columns}"], "D2": ["C, 32"]}


def test_8_bit_models_cost_as_before(models, tables):
    """At the files' own widths nothing is resized: edge and edge@8 give one result for a W8A8 model, and
    the 4-bit same-area array is not offered to it."""
    scenario = load_scenario("edge")
    assert sized_accelerator(scenario.accelerator, ArrayWidths(8, 8, 32)) is scenario.accelerator
    assert [packed_bytes(b) for b in (8, 9, 16, 32)] == [1, 2, 2, 4]
    said: list[str] = []
    paths = {"dot": models[("dot", 8)], "dot4": models[("dot", 4)]}
    results = scenario_costs(paths, [scenario, load_scenario("edge@8"), load_scenario("edge_same_area")], (8,),
                             tables, say=said.append)
    by = {(r.scenario, r.model): r for r in results}
    assert by[("edge", "dot")].energy_pj == by[("edge@8", "dot")].energy_pj
    assert by[("edge", "dot")].area_mm2 == by[("edge@8", "dot")].area_mm2
    assert ("edge_same_area", "dot") not in by and ("edge@8", "dot4") not in by
    assert by[("edge_same_area", "dot4")].total_pj > 0
    assert any("not costed: dot on edge_same_area" in s and "8x8" in s for s in said)


def test_widths_the_hardware_cannot_hold_are_refused(models, tmp_path, capsys):
    for name, message in (("edge@2", "2-bit processing element"), ("edge@17", "17-bit processing element"),
                          ("edge@4y", "not N or IxW")):
        with pytest.raises(UserError, match=message):
            load_scenario(name)
    stage = GemmStage("big", "linear", 1, 8, 8, 8, 8, 8, 72, 8, True)
    with pytest.raises(UserError, match="72-bit accumulator"):
        array_widths([stage], [72], None, None, "test")
    with pytest.raises(UserError, match="node 'big' .* needs a 72-bit accumulator, over the array's 64"):
        array_widths([stage], [64], None, None, "test")
    edge = yaml.safe_load((PACKAGED / "edge.yaml").read_text(encoding="utf-8"))
    edge.update(accelerator=str(PACKAGED / edge["accelerator"]), mapping=str(PACKAGED / edge["mapping"]))
    out = tmp_path / "out.csv"
    for extra, message in (({"acc_bits": 72}, "72-bit accumulator is outside the 1..64 bits"),
                           ({"pe_bits": 2}, "2-bit processing element"),
                           ({"same_area_bits": 8}, "same_area_bits needs pe_bits")):
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump({**edge, **extra}), encoding="utf-8")
        assert main(["cost", models[("dot", 8)], "--scenario", str(path), "--lengths", "8", "--csv", str(out)]) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()
    assert main(["cost", models[("dot", 8)], "--scenario", "edge@2", "--lengths", "8", "--csv", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2-bit processing element" in err and "edge@4" in err and not out.exists()
    # an 8-bit model on 4-bit PEs alone: nothing to cost, refused
    assert main(["cost", models[("dot", 8)], "--scenario", "edge@4", "--lengths", "8", "--csv", str(out),
                 "--jobs", "1"]) == 2
    assert "built for 4x4" in capsys.readouterr().err and not out.exists()
