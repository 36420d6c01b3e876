"""The bad-input catalogue of docs/BAD_INPUTS.md: every row runs the real command line in a
subprocess and must exit 2 with `hwsim CMD: error: MESSAGE...` on stderr, leaving no output file
(and no temporary `*.part` file) behind."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
WORDS = [a + b for a in "bcdfghjk" for b in "aeiouxyz"][:80]  # the tokenizer knows 85 tokens, the model 50
ZIGZAG_MAPPINGS = Path(find_spec("zigzag").origin).parent / "inputs" / "mapping"
SYNTH = dict(vocab=50, max_position=64, hidden=8, heads=2, ffn=16, layers=1, attention="inhibitor")


def hwsim(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "hwsim.app.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """A good model, its tokenizer, a run report, a quantized run folder and a GLUE folder."""
    from transformers import BertTokenizerFast

    from export import save_model, to_onnx
    from quant.train.checkpoint import save_quant_run
    from quant.qat.model import random_quant_model
    from quant.intops.synth import SynthConfig, synth_program

    root = tmp_path_factory.mktemp("kit")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}).save_pretrained(str(root / "tok"))
    save_model(to_onnx(synth_program(SynthConfig(**SYNTH))), root / "good.onnx")
    done = hwsim("run", root / "good.onnx", "--text", "ba be bi", "--tokenizer", root / "tok",
                 "--report", root / "run.json", cwd=root)
    assert done.returncode == 0, done.stderr
    report = json.loads((root / "run.json").read_text(encoding="utf-8"))  # see test_report_reads_run_report
    layers = report["counts"]["node_layer"]
    report["counts"]["node_layer"] = {k: "other" if v is None else f"layer {v}" for k, v in layers.items()}
    (root / "run.json").write_text(json.dumps(report), encoding="utf-8")
    qmodel = random_quant_model("minilm", "inhibitor", 8, 0, calib_batches=1, calib_len=8)
    save_quant_run(qmodel, qmodel.cfg, qmodel.qcfg, root / "qrun")
    return root


def edited(src: Path, dst: Path, edit) -> Path:
    model = onnx.load(str(src))
    edit(model)
    onnx.save(model, str(dst))
    return dst


def _float_initializer(m):
    m.graph.initializer.append(numpy_helper.from_array(np.zeros(3, np.float32), "scale"))


def _float_in_function(m):
    fn = m.functions[0]
    fn.node.append(helper.make_node("Cast", [fn.output[0]], ["as_float"], to=TensorProto.FLOAT))


def _unknown_op(m):
    node = next(n for n in m.graph.node if n.op_type == "InhibitorAttention")
    node.op_type, node.domain = "Softmax", ""


def _shape_mismatch(m):
    init = next(t for t in m.graph.initializer if t.name == "l0.v.w")  # (8, 8) -> (5, 8)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init)[:5], init.name))


def _narrow(tensor, bits):
    def edit(m):
        prop = next(p for p in m.metadata_props if p.key == "hwsim.tensor_bits")
        prop.value = json.dumps({**json.loads(prop.value), tensor: bits})
    return edit


def _external_escape(location):
    def edit(m):
        init = next(t for t in m.graph.initializer if t.name == "emb.word")
        raw = numpy_helper.to_array(init)
        init.ClearField("raw_data")
        init.ClearField("int32_data")
        init.data_location = TensorProto.EXTERNAL
        for key, value in {"location": location, "offset": "0", "length": str(raw.nbytes)}.items():
            init.external_data.add(key=key, value=value)
    return edit


def run_model(edit, text="ba be bi"):
    """`hwsim run` on the good model changed by `edit`; output: the report."""
    def case(k: Path):
        model = edited(k / "good.onnx", k / "case" / "model.onnx", edit) if edit else k / "good.onnx"
        return ["run", model, "--text", text, "--tokenizer", k / "tok", "--report", k / "case" / "out.json"], "out.json"
    return case


def run_hw(config: dict):
    def case(k: Path):
        (k / "case" / "hw.json").write_text(json.dumps(config), encoding="utf-8")
        return ["run", k / "good.onnx", "--text", "ba", "--tokenizer", k / "tok", "--hw", k / "case" / "hw.json",
                "--report", k / "case" / "out.json"], "out.json"
    return case


def truncated(k: Path):
    data = (k / "good.onnx").read_bytes()
    (k / "case" / "model.onnx").write_bytes(data[: len(data) // 2])
    return ["run", k / "case" / "model.onnx", "--text", "ba", "--tokenizer", k / "tok",
            "--report", k / "case" / "out.json"], "out.json"


def export_run(prepare):
    def case(k: Path):
        run_dir = k / "case" / "run"
        run_dir.mkdir()
        prepare(k, run_dir)
        return ["export", run_dir, "--out", k / "case" / "model.onnx"], "model.onnx"
    return case


def _corrupt_quant(k, run_dir):
    (run_dir / "config.json").write_bytes((k / "qrun" / "config.json").read_bytes())
    (run_dir / "model.safetensors").write_bytes((k / "qrun" / "model.safetensors").read_bytes()[:1000])


def _missing_quant(k, run_dir):
    (run_dir / "config.json").write_bytes((k / "qrun" / "config.json").read_bytes())


def _float_run(k, run_dir):
    (run_dir / "config.json").write_text(json.dumps({"encoder_config": {}, "extra": {}}), encoding="utf-8")


def _no_checkpoint(k, run_dir):
    (run_dir / "metrics.json").write_text("{}", encoding="utf-8")


def train(*args):
    def case(k: Path):
        return ["train", *(a.format(case=k / "case") for a in args), "--out", k / "case" / "run"], "run"
    return case


def glue_row(k: Path):
    folder = k / "case" / "glue" / "SST-2"
    folder.mkdir(parents=True)
    (folder / "train.tsv").write_text("sentence\tlabel\na fine film\t1\nno label here\n", encoding="utf-8")
    (folder / "dev.tsv").write_text("sentence\tlabel\nok\t1\n", encoding="utf-8")
    return ["data", "sst2", "--data-dir", folder.parent], None


def energy_missing(k: Path):
    table = (ROOT / "hwsim" / "cost" / "data" / "horowitz45.csv").read_text(encoding="utf-8").splitlines()
    kept = [row for row in table if not row.startswith("div,")]
    (k / "case" / "table.csv").write_text("\n".join(kept) + "\n", encoding="utf-8")
    return ["report", k / "run.json", "--energy-table", k / "case" / "table.csv",
            "--csv", k / "case" / "out.csv", "--plot", k / "case" / "out.png"], "out.csv"


def scenario(edit_acc=None, mapping=None, **fields):
    """`hwsim cost` on a copy of the packaged `edge` scenario, its accelerator edited by `edit_acc`."""
    import yaml

    packaged = ROOT / "hwsim" / "cost" / "scenarios"

    def case(k: Path):
        acc = yaml.safe_load((packaged / "accelerators" / "edge32.yaml").read_text(encoding="utf-8"))
        if edit_acc:
            edit_acc(acc)
        (k / "case" / "acc.yaml").write_text(yaml.safe_dump(acc), encoding="utf-8")
        data = yaml.safe_load((packaged / "edge.yaml").read_text(encoding="utf-8"))
        data.update(accelerator="acc.yaml", mapping=mapping or str(packaged / "mappings" / "ws32.yaml"), **fields)
        (k / "case" / "my.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
        return ["cost", k / "good.onnx", "--scenario", k / "case" / "my.yaml", "--lengths", "8", "--jobs", "1",
                "--csv", k / "case" / "out.csv"], "out.csv"
    return case


def command(*args, output=None):
    """Any command line; `{case}` in an argument is the case folder, `{kit}` the kit folder."""
    def case(k: Path):
        return [str(a).format(case=k / "case", kit=k) for a in args], output
    return case


def _gb(key, value):
    return lambda acc: acc["memories"]["gb"].__setitem__(key, value)


def _no_mem_type(acc):
    del acc["memories"]["gb"]["mem_type"]


# id -> (builder of (args, output file name), message prefix after "hwsim CMD: error: ")
CATALOGUE = {
    "truncated-onnx": (truncated, "model {case}/model.onnx is not a readable ONNX file"),
    "float-initializer": (run_model(_float_initializer), "initializer 'scale' is FLOAT: hwsim runs integer-only models"),
    "unknown-op": (run_model(_unknown_op), "unsupported op Softmax in node 'l0.ctxh'"),
    "model-not-found": (command("run", "{case}/missing.onnx", "--text", "ba", "--report", "{case}/out.json",
                                output="out.json"), "model {case}/missing.onnx not found; pass the .onnx file"),
    "float-in-function-body": (run_model(_float_in_function), "function "),
    "shape-mismatch": (run_model(_shape_mismatch), "node 'l0.v' (Linear): "),
    "declared-width-overflow": (run_model(_narrow("emb", 4)), "node 'emb': tensor 'emb' holds "),
    "token-id-outside-vocab": (run_model(None, "ba kz"), "node 'emb' (Embed): "),
    "external-data-escapes": (run_model(_external_escape("../outside.bin")),
                              "initializer 'emb.word': external data '../outside.bin' does not resolve to a file inside"),
    "external-data-absolute": (run_model(_external_escape("/etc/passwd")),
                               "initializer 'emb.word': external data '/etc/passwd' does not resolve to a file inside"),
    "unknown-hw-key": (run_hw({"sram_kb": 1}), "hardware config {case}/hw.json: unknown keys ['sram_kb']"),
    "corrupt-quant-checkpoint": (export_run(_corrupt_quant), "cannot read {case}/run/model.safetensors"),
    "missing-quant-checkpoint": (export_run(_missing_quant), "cannot read {case}/run/model.safetensors"),
    "float-run-not-quantized": (export_run(_float_run), "{case}/run holds a float checkpoint, not a quantized run"),
    "run-without-checkpoint": (export_run(_no_checkpoint), "{case}/run/config.json not found: {case}/run is not a quantized training run"),
    "export-no-run-folder": (command("export", "{case}/nope", "--out", "{case}/model.onnx", output="model.onnx"),
                             "run folder {case}/nope does not exist; train one with"),
    "unknown-task": (train("--task", "nope"), "unknown task 'nope'; known tasks: "),
    "unknown-split": (command("run", "{kit}/good.onnx", "--task", "rt", "--split", "dev", "--tokenizer", "{kit}/tok",
                              "--report", "{case}/out.json", output="out.json"), "task 'rt' has no split 'dev'"),
    "bad-bits": (train("--bits", "1"), "--bits 1 is not a width the hardware holds: use 4..16"),
    "export-below-floor-width": (command("export", "--init", "random", "--arch", "minilm", "--bits", "2", "--out",
                                         "{case}/model.onnx", output="model.onnx"),
                                 "QuantConfig.weight_bits=2 is not a width the hardware holds: use an integer in 4..16"),
    "unknown-widths": (train("--widths", "w2a2"), "argument --widths: invalid choice: 'w2a2'"),
    "missing-teacher": (train("--teacher", "{case}/nope"), "teacher '{case}/nope' is neither a known name (minilm) nor an existing folder"),
    "hub-offline": (command("data", "sst2", "--offline"), "cannot load glue/sst2: offline mode is on"),
    "engine-conflict": (command("run", "{kit}/good.onnx", "--text", "ba", "--jobs", "1", "--workers", "2",
                                "--tokenizer", "{kit}/tok", "--report", "{case}/out.json", output="out.json"),
                        "give at most one of --jobs, --workers and --scheduler"),
    "unknown-scenario": (command("cost", "{kit}/good.onnx", "--scenario", "nope", "--csv", "{case}/out.csv",
                                 output="out.csv"), "unknown scenario 'nope': use one of"),
    "unknown-attention": (train("--attention", "softmax2"), "unknown attention 'softmax2': use one of "),
    "malformed-glue-row": (glue_row, "{case}/glue/SST-2/train.tsv line 3: 1 tab-separated fields, expected 2"),
    "energy-table-missing-entry": (energy_missing, "{case}/table.csv has no entry for "),
    "scenario-memory-size": (scenario(_gb("size", "4MB")), "scenario {case}/my.yaml: accelerator {case}/acc.yaml: "
                             "memories.gb.size must be a positive integer (bits), got '4MB'"),
    "scenario-clock": (scenario(clock_mhz="500MHz"), "scenario {case}/my.yaml: clock_mhz must be a positive number "
                       "(MHz), got '500MHz'"),
    "scenario-port-bandwidth": (scenario(lambda acc: acc["memories"]["gb"]["ports"][0].__setitem__("bandwidth_max", "512")),
                                "scenario {case}/my.yaml: accelerator {case}/acc.yaml: memories.gb.ports[0].bandwidth_max "
                                "must be a positive integer (bits per cycle), got '512'"),
    "scenario-mem-type-needed": (scenario(_no_mem_type), "scenario {case}/my.yaml: accelerator {case}/acc.yaml: memory "
                                 "'gb' leaves r_cost, w_cost, area out and has no mem_type"),
    "scenario-mapping-dims": (scenario(mapping=str(ZIGZAG_MAPPINGS / "gemm_l1_l3.yaml")),
                              "scenario {case}/my.yaml: mapping " + str(ZIGZAG_MAPPINGS / "gemm_l1_l3.yaml")
                              + " unrolls loop dim 'D0', which the GEMM stages do not have"),
}


def doc_rows() -> dict[str, str]:
    """id -> message column of every table row of docs/BAD_INPUTS.md that has an exit column."""
    rows = {}
    for line in (ROOT / "docs" / "BAD_INPUTS.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 5 and cells[4] == "2":
            rows[cells[0]] = cells[3].strip("`").strip().replace("\\|", "|")
    return rows


def doc_pattern(message: str) -> re.Pattern:
    """The doc's message as a regex: `…` stands for any text, DIR for a folder."""
    parts = re.split(r"(…|DIR)", message)
    return re.compile("".join({"…": ".*?", "DIR": ".+?"}.get(p, re.escape(p)) for p in parts))


def test_doc_lists_the_catalogue():
    """docs/BAD_INPUTS.md has one row per catalogue entry and no other: each row is run below."""
    assert sorted(doc_rows()) == sorted(CATALOGUE)


@pytest.mark.parametrize("row", list(CATALOGUE))
def test_rejected(row, kit):
    build, message = CATALOGUE[row]
    case = kit / "case"
    if case.exists():
        import shutil
        shutil.rmtree(case)
    case.mkdir()
    args, output = build(kit)
    done = hwsim(*args, cwd=case)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    prefix = f"hwsim {args[0]}: error: " + message.format(case=case)
    assert prefix in done.stderr, done.stderr
    documented = re.escape(f"hwsim {args[0]}: error: ") + doc_pattern(doc_rows()[row]).pattern
    assert re.search(documented, done.stderr), (doc_rows()[row], done.stderr)  # the doc's row is what users see
    assert "Traceback" not in done.stderr
    if output:
        assert not (case / output).exists()
    assert not list(case.rglob("*.part")), list(case.rglob("*"))


def test_float_in_function_body_rejected(kit):
    """Regression (hwsim/sim/graph.py): a float Cast inside a `hwsim.int` function body breaks the
    integer-only contract, and `export.checks.validate` rejects it, but `hwsim run` accepted it
    (exit 0): `load_plan` checks initializers and graph values only, never `model.functions`."""
    case = kit / "case_fn"
    case.mkdir(exist_ok=True)
    (kit / "case").mkdir(exist_ok=True)
    args, output = run_model(_float_in_function)(kit)
    args = [str(a).replace(str(kit / "case"), str(case)) for a in args]
    edited(kit / "good.onnx", case / "model.onnx", _float_in_function)
    done = hwsim(*args, cwd=case)
    assert done.returncode == 2, done.stdout
    assert "hwsim run: error: " in done.stderr and "FLOAT" in done.stderr, done.stderr
    assert not (case / output).exists()


def test_report_reads_run_report(kit):
    """Regression (hwsim/cost/report.py vs hwsim/app/run_cli.py): `hwsim run` writes counts.node_layer as an
    int or null (embedding, pooler, classifier nodes), and `hwsim report` crashed on the null with
    `TypeError: 'NoneType' object is not subscriptable` in format_tables (`name[:24]`)."""
    case = kit / "case_report"
    case.mkdir(exist_ok=True)
    done = hwsim("run", kit / "good.onnx", "--text", "ba be", "--tokenizer", kit / "tok", "--report", case / "r.json",
                 cwd=case)
    assert done.returncode == 0, done.stderr
    done = hwsim("report", case / "r.json", "--csv", case / "r.csv", cwd=case)
    assert done.returncode == 0, done.stderr
    assert (case / "r.csv").is_file()
