"""The mapping-aware cost model (hwsim/cost): ZigZag integration equals ZigZag standalone, closed forms
of a weight-stationary GEMM, the scenario table on tiny synthetic models, and bad scenarios."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import yaml

from hwsim.app.cli import main
from hwsim.cost.model import MappedCost, tile_counts, tile_homes, workload_at
from hwsim.cost.scenario import homes_accelerator, load_scenario, packaged_names
from hwsim.cost.stages import GemmStage, gemm_stages
from hwsim.cost.table import load_tables, ratios, scenario_costs
from hwsim.cost.zigzag_map import ZIGZAG_OPTIONS, map_stage, run_zigzag, summarise_cme, workload
from models.errors import UserError

LINEAR = GemmStage("l0.q", "linear", 1, 128, 256, 256, 8, 8, 32, 8, True)
SCORES = GemmStage("l0.attn", "scores", 4, 64, 64, 32, 8, 8, 32, 8, False)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HWSIM_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def edge():
    scenario = load_scenario("edge")
    return scenario, MappedCost(scenario, load_tables())


def _resolved(mc, scenario, stage, folder: Path) -> tuple[dict, Path]:
    acc = homes_accelerator(mc.main, tile_homes(stage, scenario, mc.main, lambda t: scenario.activations_home))
    path = folder / "acc.yaml"
    path.write_text(yaml.safe_dump(acc, sort_keys=False), encoding="utf-8")
    return acc, path


@pytest.mark.parametrize("stage", [LINEAR, SCORES], ids=["linear", "inhibitor-scores"])
def test_integration_equals_zigzag_standalone(edge, stage, tmp_path):
    from zigzag.api import get_hardware_performance_zigzag

    scenario, mc = edge
    acc, path = _resolved(mc, scenario, stage, tmp_path)
    ours = map_stage(stage, acc, scenario.mapping, 1024)
    _, latency, cmes = get_hardware_performance_zigzag(
        workload(stage), str(path), scenario.mapping, opt=ZIGZAG_OPTIONS["opt"], lpf_limit=ZIGZAG_OPTIONS["lpf_limit"],
        nb_spatial_mappings_generated=ZIGZAG_OPTIONS["nb_spatial_mappings_generated"],
        dump_folder=str(tmp_path / "dump"), loma_show_progress_bar=False)
    logging.disable(logging.NOTSET)
    theirs = summarise_cme(cmes[0][1][0][0], 1024)
    assert ours.cycles == latency == theirs.cycles
    assert ours.levels == theirs.levels
    assert ours.by_operand == theirs.by_operand
    assert map_stage(stage, acc, scenario.mapping, 1024) == ours   # read back from the disk cache


def test_weight_stationary_closed_forms(edge, tmp_path):
    """32x32 array, dims that divide: every PE busy in every ideal cycle, each weight read from DRAM once."""
    scenario, mc = edge
    acc, _ = _resolved(mc, scenario, LINEAR, tmp_path)
    m = map_stage(LINEAR, acc, scenario.mapping, 1024)
    assert m.ideal_cycles == LINEAR.mac_sites / 1024
    assert m.cycles >= m.ideal_cycles
    dram_bits = 192                                    # edge32's DRAM port
    # each weight once, in accesses of the 192-bit port (ZigZag truncates the fractional last access)
    assert m.by_operand["W"]["dram"]["read"] == LINEAR.reduce * LINEAR.cols * 8 // dram_bits
    assert m.by_operand["I"]["gb"]["read"] >= LINEAR.rows * LINEAR.reduce * 8 / 512


def test_stages_of_sites():
    from hwsim.sim.counting import OpSite

    lin = OpSite("Linear", "q", {"shift": 9, "bits": 8, "acc_bits": 32}, ((1, 7, 16), (16, 24), (24,)), ((1, 7, 24),),
                 (8, 8, 32), (8,), (False, True, True))
    (st,) = gemm_stages(lin)
    assert (st.groups, st.rows, st.cols, st.reduce, st.w_param) == (1, 7, 24, 16, True)
    att = OpSite("InhibitorAttention", "a", {"bits": 9, "z_shift": 3, "out_shift": 2},
                 ((1, 2, 7, 8), (1, 2, 7, 8), (1, 2, 7, 8), (1, 7)), ((1, 2, 7, 8),), (8, 8, 8, 1), (8,),
                 (False,) * 4)
    scores, mixing = gemm_stages(att)
    assert (scores.groups, scores.rows, scores.cols, scores.reduce, scores.bits_final) == (2, 7, 7, 8, 9)
    assert (mixing.rows, mixing.cols, mixing.reduce, mixing.bits_i) == (7, 8, 7, 9)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from export import save_model, to_onnx
    from quant.intops.synth import SynthConfig, synth_program

    root = tmp_path_factory.mktemp("cost_models")
    paths = {}
    for variant in ("dot", "inhibitor", "symmetric"):
        cfg = SynthConfig(attention=variant, hidden=32, heads=2, ffn=64, layers=1, center=variant == "inhibitor")
        paths[variant] = str(root / f"{variant}.onnx")
        save_model(to_onnx(synth_program(cfg)), paths[variant])
    return paths


def test_scenario_table_on_tiny_models(tiny_models):
    scenarios = [load_scenario(n) for n in packaged_names()]
    results = scenario_costs(tiny_models, scenarios, (8, 32), load_tables(), jobs=1)
    assert len(results) == len(scenarios) * 3 * 2
    by = {(r.scenario, r.variant, r.seq_len): r for r in results}
    for r in results:
        assert r.total_pj > 0 and r.attention_pj > 0
        if r.scenario != "today":
            assert r.latency_us > 0 and 0 < r.utilisation <= 1 and r.area_total_mm2 > 0
            assert r.energy_pj["link"] > 0 and r.energy_pj["register"] > 0
    # batching amortises weight reads: less DRAM energy per inference
    assert by[("batch8", "dot", 32)].energy_pj["dram"] < by[("edge", "dot", 32)].energy_pj["dram"]
    # the inhibitor multiplies nothing in attention: its attention arithmetic is cheaper than dot's
    assert by[("edge", "inhibitor", 32)].energy_pj["arith.attention"] < by[("edge", "dot", 32)].energy_pj["arith.attention"]
    # its dual-mode PEs cost area; a separate unit adds its own
    assert by[("edge", "inhibitor", 8)].area_total_mm2 > by[("edge", "dot", 8)].area_total_mm2
    assert "attention unit arithmetic" in by[("attention_unit", "inhibitor", 8)].area_mm2
    assert {(s, n) for s, n, _, _ in ratios(results)[("inhibitor", "dot")]} == \
        {(s.name, n) for s in scenarios for n in (8, 32)}


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _copy_edge(tmp_path: Path, edit_acc=None, **scenario_changes) -> Path:
    from hwsim.cost.scenario import PACKAGED

    acc = yaml.safe_load((PACKAGED / "accelerators" / "edge32.yaml").read_text())
    if edit_acc:
        edit_acc(acc)
    _write(tmp_path / "acc.yaml", acc)
    data = yaml.safe_load((PACKAGED / "edge.yaml").read_text())
    data.update(accelerator="acc.yaml", mapping=str(PACKAGED / "mappings" / "ws32.yaml"), **scenario_changes)
    return _write(tmp_path / "mine.yaml", data)


def test_unknown_scenario_name():
    with pytest.raises(UserError, match="unknown scenario 'tpu9'.*edge"):
        load_scenario("tpu9")


def test_scenario_with_a_missing_level(tmp_path):
    path = _copy_edge(tmp_path, activations_home="l2")
    with pytest.raises(UserError, match="activations_home 'l2' is not a memory"):
        load_scenario(path)
    def drop_i2(acc):
        acc["memories"].pop("w_reg")
        for mem in acc["memories"].values():
            mem["operands"] = [o for o in mem["operands"] if o != "I2"]
            for port in mem["ports"]:
                port["allocation"] = [a for a in port["allocation"] if not a.startswith("I2")]
    path = _copy_edge(tmp_path, edit_acc=drop_i2)
    with pytest.raises(UserError, match="no memory level holds operand I2"):
        load_scenario(path)


def test_cli_bad_inputs_exit_non_zero_and_write_nothing(tiny_models, tmp_path, capsys):
    out = tmp_path / "out.csv"
    assert main(["cost", tiny_models["dot"], "--scenario", "tpu9", "--csv", str(out)]) != 0
    assert "unknown scenario" in capsys.readouterr().err
    # a weight register narrower than one 8-bit weight: the stage does not fit the hierarchy
    def shrink(acc):
        acc["memories"]["w_reg"]["size"] = 4
    path = _copy_edge(tmp_path, edit_acc=shrink)
    assert main(["cost", tiny_models["dot"], "--scenario", str(path), "--lengths", "8", "--csv", str(out),
                 "--jobs", "1"]) != 0
    err = capsys.readouterr().err
    assert "does not fit the memory hierarchy" in err
    assert not out.exists() and not any(p.name.startswith(".out.csv") for p in tmp_path.iterdir())
    assert main(["cost", tiny_models["dot"], "--lengths", "8,x", "--csv", str(out)]) != 0
    assert not out.exists()
    assert not os.path.exists(tmp_path / "missing.onnx")
    assert main(["cost", str(tmp_path / "missing.onnx"), "--scenario", "edge", "--csv", str(out)]) != 0


def test_run_and_report_show_scenarios(tmp_path, capsys):
    from test_eval_parallel import RT_TEST, SYNTH, WORDS, run_args

    from export import save_model, to_onnx
    from quant.intops.synth import SynthConfig, synth_program
    from transformers import BertTokenizerFast

    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}).save_pretrained(str(tmp_path / "tok"))
    save_model(to_onnx(synth_program(SynthConfig(**SYNTH))), tmp_path / "m.onnx")
    report = tmp_path / "r.json"
    # a bad scenario fails before simulating: no report
    assert main(run_args(tmp_path, RT_TEST, report, "--jobs", "1", "--scenario", "nope")) != 0
    assert not report.exists()
    assert main(run_args(tmp_path, RT_TEST, report, "--jobs", "1", "--scenario", "edge")) == 0
    out = capsys.readouterr().out
    assert "on accelerator scenarios" in out and "| edge | dot |" in out
    import json
    rows = json.loads(report.read_text())["scenarios"]
    assert [r["scenario"] for r in rows] == ["edge"] and float(rows[0]["latency_us"]) > 0
    assert main(["report", str(report), "--scenario", "today", "--scenario", "edge"]) == 0
    out = capsys.readouterr().out
    assert "| today | dot |" in out and "| edge | dot |" in out


# --- the schedule's acceptance (issue 18): MiniLM dimensions, one layer, up to 512 tokens ---------------------

@pytest.fixture(scope="module")
def minilm_layer(tmp_path_factory):
    from export import save_model, to_onnx
    from hwsim.sim.graph import load_plan
    from quant.intops.synth import SynthConfig, synth_program

    path = tmp_path_factory.mktemp("minilm") / "dot.onnx"
    save_model(to_onnx(synth_program(SynthConfig(hidden=384, heads=12, ffn=1536, layers=1, max_position=512))), path)
    return str(path), load_plan(str(path))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("zzcache"))


def _tile_maps(mc, work, site_name):
    """(tile, times per inference, mapped tile) of every stage of one node under its schedule."""
    sched = mc.schedule(work)
    site = next(s for s in work.sites if s.name == site_name)
    fn = next(f for f in work.flow.nodes if f.name == site_name)
    from hwsim.cost.stages import gemm_stages as stages_of

    out = []
    for stage in stages_of(site, work.acc_bits[site_name]):
        homes = tile_homes(stage, mc.s, mc.main, mc._level(sched), fn.reads, fn.writes)
        out += [(tile, n, mc.map_tile(tile, mc.main, mc.s.mapping, homes)) for tile, n in tile_counts(stage, sched.group)]
    return out


def test_attention_at_512_tokens_keeps_its_score_tiles_on_chip(minilm_layer, shared_cache, monkeypatch):
    monkeypatch.setenv("HWSIM_CACHE", shared_cache)
    mc = MappedCost(load_scenario("edge"), load_tables())
    work = workload_at(minilm_layer[1], 512)
    maps = _tile_maps(mc, work, "l0.ctxh")
    assert {t.kind for t, _, _ in maps} == {"scores", "mixing"}
    for tile, per_inference, m in maps:
        assert (tile.groups, tile.rows, per_inference) == (1, 128, 12 * 4)      # one head, one query tile
        produced = m.by_operand["O"] if tile.kind == "scores" else m.by_operand["I"]
        assert "dram" not in produced                                          # the score tile stays in the buffer


def test_a_512_row_linear_costs_four_128_row_tiles(minilm_layer, shared_cache, monkeypatch):
    from hwsim.cost.latency import stage_latency

    monkeypatch.setenv("HWSIM_CACHE", shared_cache)
    mc = MappedCost(load_scenario("edge"), load_tables())
    costs = {}
    for n in (128, 512):
        maps = _tile_maps(mc, workload_at(minilm_layer[1], n), "l0.o")
        costs[n] = (sum(sum(r["pJ"] for r in m.levels.values()) * k for _, k, m in maps),
                    sum(stage_latency(m, t, mc.unroll[mc.s.mapping])[0] * k for t, k, m in maps))
    assert costs[512][0] == pytest.approx(4 * costs[128][0], rel=0.02)
    assert costs[512][1] == pytest.approx(4 * costs[128][1], rel=0.02)


def test_batches_never_cost_more_per_inference_and_weights_are_read_once(minilm_layer, shared_cache, monkeypatch):
    monkeypatch.setenv("HWSIM_CACHE", shared_cache)
    path, plan = minilm_layer
    scenarios = [load_scenario(n) for n in ("edge", "batch8", "batch32")]
    results = scenario_costs({"dot": path}, scenarios, (16, 128, 512), load_tables(), jobs=1)
    by = {(r.scenario, r.seq_len): r for r in results}
    for n in (16, 128, 512):
        one = by[("edge", n)]
        for batched in ("batch8", "batch32"):
            assert by[(batched, n)].total_pj <= one.total_pj * (1 + 1e-9), (batched, n)
            assert by[(batched, n)].dram_bytes.get("weights", 0) <= one.dram_bytes["weights"]
    assert by[("batch8", 16)].total_pj < 0.5 * by[("edge", 16)].total_pj          # weights shared by 8 samples
    # closed forms at batch 1 and 128 tokens (one tile): every weight byte read from DRAM once, and
    # nothing else goes there (every tile and kept tensor fits the 512 KiB buffer)
    weight_bytes = sum(plan.params[n.inputs[1]].size for n in plan.nodes if n.op_type == "Linear")
    assert by[("edge", 128)].dram_bytes["weights"] == weight_bytes
    assert by[("edge", 128)].dram_bytes.get("activations", 0) == 0 and not by[("edge", 128)].spilled
