"""Scenario, accelerator and mapping files: every field checked (a broken one is a `UserError` naming
the file and field, exit code 2 from the CLI, no output), and ZigZag's own shipped accelerators run as
scenarios as they are (read from the installed zigzag-dse at test time).

ZigZag 3.9.1's `inputs/hardware/*.yaml`, which run and which do not:
- tpu_like, edge_tpu_like, tesla_npu_like, meta_prototype, ascend_like: with their own shipped mapping
  (convolution dims read by im2col, `hwsim.cost.own`).
- generic_array_cacti: with ZigZag's `default.yaml` (32x32 on its 256x256 array).
- eyeriss_like (14x12), gemm_l1, gemm_l1_l3 (8x8x8): run with a mapping written for their array here
  (`_fitted_mapping`); no shipped mapping fits: `default.yaml` unrolls 32 on a 14-PE dimension, and the
  gemm mappings name loop dims D0, D1, D2 of a workload ZigZag does not ship (hwsim cannot tell which
  is the reduction), so the scenario is refused with a message pointing at a packaged mapping.
- aimc, dimc: not GEMM-capable here: in-memory-computing arrays (`is_imc`), which hwsim refuses (it
  prices digital processing elements, not ZigZag's IMC cells and ADCs).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hwsim.app.cli import main
from hwsim.cost.scenario import PACKAGED, load_scenario
from hwsim.cost.table import load_tables, ratios, scenario_costs
from models.errors import UserError

ZIGZAG_INPUTS = Path(__import__("zigzag").__file__).parent / "inputs"
OWN_MAPPING = {"tpu_like": "tpu_like", "edge_tpu_like": "edge_tpu_like", "tesla_npu_like": "tesla_npu_like",
               "meta_prototype": "meta_prototype_like", "ascend_like": "ascend_like",
               "generic_array_cacti": "default"}
FITTED = ("eyeriss_like", "gemm_l1", "gemm_l1_l3")
IMC = ("aimc", "dimc")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HWSIM_CACHE", str(tmp_path / "cache"))


def _write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _fitted_mapping(acc_file: Path, folder: Path) -> Path:
    """K, C, then rows B across the array's dimensions, at the array's sizes."""
    array = yaml.safe_load(acc_file.read_text())["operational_array"]
    spatial = {d: [f"{dim}, {n}"] for d, n, dim in zip(array["dimensions"], array["sizes"], ("K", "C", "B", "B"))}
    return _write(folder / f"{acc_file.stem}_map.yaml",
                  [{"name": "default", "spatial_mapping": spatial, "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"}}])


def _zigzag_scenario(name: str, folder: Path) -> Path:
    acc = ZIGZAG_INPUTS / "hardware" / f"{name}.yaml"
    mapping = (ZIGZAG_INPUTS / "mapping" / f"{OWN_MAPPING[name]}.yaml" if name in OWN_MAPPING
               else _fitted_mapping(acc, folder))
    return _write(folder / f"my_{name}.yaml", {"name": f"my_{name}", "source": f"ZigZag's {name}, unchanged.",
                                               "accelerator": str(acc), "mapping": str(mapping)})


def test_every_shipped_accelerator_is_listed():
    shipped = {p.stem for p in (ZIGZAG_INPUTS / "hardware").glob("*.yaml")}
    assert shipped == set(OWN_MAPPING) | set(FITTED) | set(IMC)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from export import save_model, to_onnx
    from quant.intops.synth import SynthConfig, synth_program

    root = tmp_path_factory.mktemp("own_models")
    paths = {}
    for variant in ("dot", "inhibitor"):
        cfg = SynthConfig(attention=variant, hidden=32, heads=2, ffn=64, layers=1, center=variant == "inhibitor")
        paths[variant] = str(root / f"{variant}.onnx")
        save_model(to_onnx(synth_program(cfg)), paths[variant])
    return paths


def test_shipped_accelerators_run_as_scenarios(tiny_models, tmp_path):
    names = sorted(set(OWN_MAPPING) | set(FITTED))
    scenarios = [load_scenario(_zigzag_scenario(n, tmp_path)) for n in names] + [load_scenario("edge")]
    results = scenario_costs(tiny_models, scenarios, (8,), load_tables(), jobs=1)
    assert {r.scenario for r in results} == {s.name for s in scenarios}
    for r in results:
        assert r.total_pj > 0 and r.attention_pj > 0 and r.latency_us > 0 and 0 < r.utilisation <= 1
    for name, s in zip(names, scenarios):
        assert f"Memory costs as stated in {name}.yaml" in s.source
    assert len(ratios(results)[("inhibitor", "dot")]) == len(scenarios)


@pytest.mark.parametrize("name, message", [
    ("aimc", "in-memory-computing array"),
    ("eyeriss_like", "unrolls 32 on D1, but accelerator 'eyeriss_like' has 14 PEs"),
    ("gemm_l1_l3", "unrolls loop dim 'D0'.*ws32.yaml"),
])
def test_shipped_accelerators_that_need_a_mapping(name, message, tmp_path):
    mapping = {"aimc": "default_imc", "eyeriss_like": "default", "gemm_l1_l3": "gemm_l1_l3"}[name]
    path = _write(tmp_path / "s.yaml", {"name": "s", "source": "x", "accelerator": str(ZIGZAG_INPUTS / "hardware" / f"{name}.yaml"),
                                        "mapping": str(ZIGZAG_INPUTS / "mapping" / f"{mapping}.yaml")})
    with pytest.raises(UserError, match=message):
        load_scenario(path)


def _edge_files(tmp_path: Path) -> tuple[dict, dict, list]:
    scen = yaml.safe_load((PACKAGED / "edge.yaml").read_text())
    acc = yaml.safe_load((PACKAGED / "accelerators" / "edge32.yaml").read_text())
    mapping = yaml.safe_load((PACKAGED / "mappings" / "ws32.yaml").read_text())
    return scen, acc, mapping


def _set(data, path: str, value):
    *parents, last = path.split(".")
    for key in parents:
        data = data[int(key)] if isinstance(data, list) else data[key]
    if isinstance(data, list):
        data[int(last)] = value
    else:
        data[last] = value


BROKEN = [  # (file, field path, value, message)
    ("scenario", "clock_mhz", 0, "clock_mhz must be a positive number \\(MHz\\), got 0"),
    ("scenario", "clock_mhz", "500MHz", "clock_mhz must be a positive number \\(MHz\\), got '500MHz'"),
    ("scenario", "batch", 1.5, "batch must be a positive integer \\(samples\\), got 1.5"),
    ("scenario", "batch", True, "batch must be a positive integer"),
    ("scenario", "vector_lanes", -4, "vector_lanes must be a positive integer"),
    ("scenario", "kind", "ideal", "kind must be one of \\['mapped', 'counts'\\]"),
    ("scenario", "name", 7, "name must be a non-empty string, got 7"),
    ("scenario", "source", "", "source must be a non-empty string, got ''"),
    ("scenario", "source", None, "source is missing; it must be a non-empty string"),
    ("scenario", "dram_kind", 3, "dram_kind must be a DRAM kind"),
    ("scenario", "weights_home", ["dram"], "weights_home must be the name of one of the accelerator's memories"),
    ("scenario", "accelerator", 12, "accelerator must be a file path"),
    ("scenario", "mapping", "nope.yaml", "nope.yaml not found"),
    ("scenario", "hw_config", {"a": 1}, "hw_config must be a file path"),
    ("scenario", "activations_home", "l2", "activations_home 'l2' is not a memory"),
    ("scenario", "pe_bits", "4", "pe_bits must be an operand width in bits"),
    ("scenario", "pe_bits", [8, 4, 2], "pe_bits must be an operand width in bits"),
    ("scenario", "pe_bits", [8, 2], "pe_bits: a 2-bit processing element is outside"),
    ("scenario", "same_area_bits", 1.5, "same_area_bits must be the operand width"),
    ("scenario", "acc_bits", 0, "acc_bits: a 0-bit accumulator is outside the 1..64 bits"),
    ("scenario", "acc_bits", "32", "acc_bits must be an integer"),
    ("accelerator", "memories.gb.size", "4MB", "accelerator .*acc.yaml: memories.gb.size must be a positive integer \\(bits\\), got '4MB'"),
    ("accelerator", "memories.gb.size", 0, "memories.gb.size must be a positive integer \\(bits\\), got 0"),
    ("accelerator", "memories.gb.r_cost", -1, "memories.gb.r_cost must be a number >= 0 \\(pJ per access\\)"),
    ("accelerator", "memories.gb.area", "big", "memories.gb.area must be a number >= 0 \\(mm2\\)"),
    ("accelerator", "memories.gb.latency", 1.5, "memories.gb.latency must be an integer >= 0 \\(cycles\\)"),
    ("accelerator", "memories.gb.mem_type", "flash", "memories.gb.mem_type must be one of"),
    ("accelerator", "memories.gb.operands", ["I3"], "memories.gb.operands must be a non-empty list of distinct operands"),
    ("accelerator", "memories.gb.operands", "I1", "memories.gb.operands must be a non-empty list"),
    ("accelerator", "memories.gb.ports", {}, "memories.gb.ports must be a non-empty list of ports"),
    ("accelerator", "memories.gb.ports.0.type", "rd", "memories.gb.ports\\[0\\].type must be one of"),
    ("accelerator", "memories.gb.ports.0.bandwidth_max", "512", "memories.gb.ports\\[0\\].bandwidth_max must be a positive integer \\(bits per cycle\\)"),
    ("accelerator", "memories.gb.ports.0.bandwidth_min", 1024, "ports\\[0\\].bandwidth_min 1024 exceeds bandwidth_max 512"),
    ("accelerator", "memories.gb.ports.0.allocation", "I1, tl", "memories.gb.ports\\[0\\].allocation must be a non-empty list"),
    ("accelerator", "memories.gb.ports.0.name", 3, "memories.gb.ports\\[0\\].name must be a port name"),
    ("accelerator", "memories.gb.served_dimensions", "D1", "memories.gb.served_dimensions must be a list of array dimensions"),
    ("accelerator", "memories.gb.served_dimensions", ["D3"], "served_dimensions names \\['D3'\\], not among"),
    ("accelerator", "memories.gb.colour", "red", "unknown keys \\['colour'\\] in memories.gb"),
    ("accelerator", "operational_array.sizes", [32], "operational_array.sizes \\[32\\] and dimensions"),
    ("accelerator", "operational_array.sizes", [32, "x"], "operational_array.sizes must be a non-empty list of positive integers"),
    ("accelerator", "operational_array.dimensions", "D1", "operational_array.dimensions must be a non-empty list"),
    ("accelerator", "name", None, "name is missing"),
    ("accelerator", "memories", [], "memories must be a non-empty mapping"),
    ("mapping", "0.memory_operand_links", {"O": "O"}, "ws.yaml: \\[0\\].memory_operand_links must be a mapping of O, W, I"),
    ("mapping", "0.spatial_mapping", {"D1": "K, 32"}, "\\[0\\].spatial_mapping must be a mapping of array dimensions"),
    ("mapping", "0.spatial_mapping", {"D1": ["K, 64"]}, "unrolls 64 on D1, but accelerator 'edge32' has 32 PEs"),
    ("mapping", "0.spatial_mapping", {"D1": ["OY, 4"], "D2": ["Q, 2"]}, "unrolls loop dim 'Q'"),
    ("mapping", "0.name", "Conv", "no entry named 'default' or 'Gemm'"),
]


@pytest.mark.parametrize("kind, field, value, message", BROKEN, ids=[f"{k}:{f}={v!r}" for k, f, v, _ in BROKEN])
def test_broken_field(kind, field, value, message, tmp_path):
    scen, acc, mapping = _edge_files(tmp_path)
    _set({"scenario": scen, "accelerator": acc, "mapping": mapping}[kind], field, value)
    scen.update(accelerator=scen["accelerator"] if kind == "scenario" and field == "accelerator" else "acc.yaml",
                mapping=scen["mapping"] if kind == "scenario" and field == "mapping" else "ws.yaml")
    _write(tmp_path / "acc.yaml", acc)
    _write(tmp_path / "ws.yaml", mapping)
    with pytest.raises(UserError, match=message):
        load_scenario(_write(tmp_path / "my.yaml", scen))


def test_cost_needed_without_mem_type_names_the_memory(tmp_path):
    scen, acc, mapping = _edge_files(tmp_path)
    del acc["memories"]["gb"]["mem_type"]
    del acc["memories"]["dram"]["mem_type"]           # DRAM: inferred (outermost, all operands, unbounded)
    scen.update(accelerator="acc.yaml", mapping=str(PACKAGED / "mappings" / "ws32.yaml"))
    _write(tmp_path / "acc.yaml", acc)
    with pytest.raises(UserError, match="memory 'gb' leaves r_cost, w_cost, area out and has no mem_type.*"
                                        "add mem_type: sram"):
        load_scenario(_write(tmp_path / "my.yaml", scen))
    acc["memories"]["gb"]["mem_type"] = "sram"
    _write(tmp_path / "acc.yaml", acc)
    s = load_scenario(tmp_path / "my.yaml")
    assert s.accelerator["memories"]["dram"]["mem_type"] == "dram"


def test_cli_broken_accelerator_exits_2_and_writes_nothing(tiny_models, tmp_path, capsys):
    scen, acc, _ = _edge_files(tmp_path)
    acc["memories"]["gb"]["size"] = "4MB"
    _write(tmp_path / "acc.yaml", acc)
    scen.update(accelerator="acc.yaml", mapping=str(PACKAGED / "mappings" / "ws32.yaml"))
    path = _write(tmp_path / "my.yaml", scen)
    out = tmp_path / "out.csv"
    assert main(["cost", tiny_models["dot"], "--scenario", str(path), "--csv", str(out), "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert f"scenario {path}: accelerator {tmp_path}/acc.yaml: memories.gb.size must be a positive integer (bits), got '4MB'" in err
    assert "Traceback" not in err and not out.exists()
