"""Whole synthetic programs: onnxruntime logits == quant.intops.reference logits; contract checks; atomic save."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export import ExportError, save_model, to_onnx, validate
from tests.strategies import padded_batch
from models.errors import UserError
from quant.intops.reference import run_program
from quant.ir.program import IntProgram, Node
from quant.intops.synth import SynthConfig, synth_program

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "dot": SynthConfig(attention="dot", layers=2),
    "symmetric": SynthConfig(attention="symmetric", seed=1),
    "inhibitor": SynthConfig(attention="inhibitor", layers=2, seed=2),
    "inhibitor_center_signed": SynthConfig(attention="inhibitor", center=True, signed=True, seed=3),
    "inhibitor_12bit": SynthConfig(attention="inhibitor", bits=12, signed=True, seed=4),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def exported(request):
    prog = synth_program(VARIANTS[request.param])
    model = to_onnx(prog)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return prog, model, sess


def test_logits_equal_intref(exported):
    prog, model, sess = exported
    rng = np.random.default_rng(7)
    for n in (1, 2, 7, 16, 40):
        ids, mask = padded_batch(rng, prog.meta["vocab_size"], n)
        (got,) = sess.run(None, {"input_ids": ids, "attention_mask": mask})
        want = run_program(prog, ids, mask)["logits"].numpy()
        assert got.dtype == np.int32 and got.shape == want.shape
        np.testing.assert_array_equal(got, want, err_msg=f"seq {n}")


def test_model_contract(exported):
    prog, model, _ = exported
    validate(model)
    assert model.ir_version == 10
    assert {o.domain: o.version for o in model.opset_import} == {"": 18, "hwsim.int": 1}
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask"]
    for vi in model.graph.input:
        assert vi.type.tensor_type.elem_type == TensorProto.INT64
        assert [d.dim_param for d in vi.type.tensor_type.shape.dim] == ["batch", "seq"]
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.INT32
    meta = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert meta["hwsim.tensor_bits"] == {n: t.bits for n, t in prog.tensors.items()}
    assert meta["hwsim.tensor_signed"]["logits"] is True
    assert meta["hwsim.meta"]["logits_exp"] == prog.meta["logits_exp"]
    semantic = {n.name: n for n in model.graph.node if n.domain == "hwsim.int"}
    for node in prog.nodes:
        if node.op in ("SplitHeads", "MergeHeads", "TakeFirst"):
            assert node.name not in semantic
            continue
        onnx_node = semantic[node.name]
        assert onnx_node.op_type == node.op
        assert {a.name: a.i for a in onnx_node.attribute} == dict(node.attrs)
    for init in model.graph.initializer:
        if init.name in prog.params:
            assert numpy_helper.to_array(init).dtype == prog.params[init.name].dtype


def _with_node(model: onnx.ModelProto, node: onnx.NodeProto, init: onnx.TensorProto | None = None) -> onnx.ModelProto:
    bad = onnx.ModelProto()
    bad.CopyFrom(model)
    bad.graph.node.append(node)
    if init is not None:
        bad.graph.initializer.append(init)
    return bad


@pytest.fixture(scope="module")
def small_model():
    return to_onnx(synth_program(SynthConfig(attention="inhibitor")))


def test_integer_check_rejects_float_initializer(small_model):
    init = numpy_helper.from_array(np.ones(3, np.float32), "sneaky_scale")
    node = helper.make_node("Identity", ["sneaky_scale"], ["sneaky_out"], name="use_scale")
    with pytest.raises(ExportError, match="initializer 'sneaky_scale' has type FLOAT"):
        validate(_with_node(small_model, node, init))


def test_integer_check_rejects_cast_to_float(small_model):
    node = helper.make_node("Cast", ["logits"], ["logits_f"], name="to_float", to=TensorProto.FLOAT)
    with pytest.raises(ExportError, match="node 'to_float' .*casts to FLOAT"):
        validate(_with_node(small_model, node))


def test_integer_check_looks_inside_function_bodies(small_model):
    bad = onnx.ModelProto()
    bad.CopyFrom(small_model)
    fn = bad.functions[0]
    fn.node.append(helper.make_node("Cast", [fn.node[0].output[0]], ["float_t"], name="hidden_cast", to=TensorProto.FLOAT16))
    with pytest.raises(ExportError, match=rf"function {fn.name}\[.*\]: node 'hidden_cast'.*FLOAT16"):
        validate(bad)


def test_unknown_op_names_the_node():
    prog = synth_program(SynthConfig())
    nodes = list(prog.nodes)
    nodes[3] = dataclasses.replace(nodes[3], op="Softmax")
    with pytest.raises(UserError, match=rf"node '{nodes[3].name}': op 'Softmax' has no ONNX lowering"):
        to_onnx(dataclasses.replace(prog, nodes=tuple(nodes)))


def test_check_names_a_node_without_function(small_model):
    node = helper.make_node("Gelu", ["logits"], ["g"], name="orphan", domain="hwsim.int")
    with pytest.raises(ExportError, match="node 'orphan': no lowering for hwsim.int.Gelu"):
        validate(_with_node(small_model, node))


def test_save_model_writes_checked_model(tmp_path, small_model):
    path = tmp_path / "m.onnx"
    save_model(small_model, path)
    assert onnx.load(path) == small_model
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_save_model_leaves_no_file_on_failure(tmp_path, small_model):
    node = helper.make_node("Cast", ["logits"], ["logits_f"], name="to_float", to=TensorProto.FLOAT)
    path = tmp_path / "out" / "bad.onnx"
    with pytest.raises(ExportError):
        save_model(_with_node(small_model, node), path)
    assert not path.exists() and list(path.parent.iterdir()) == []


def test_negative_left_shift_is_refused():
    prog = synth_program(SynthConfig())
    nodes = [dataclasses.replace(n, attrs={**n.attrs, "lw": -1}) if n.op == "Embed" else n for n in prog.nodes]
    with pytest.raises(UserError, match="node 'emb' .*left shift lw=-1"):
        to_onnx(IntProgram(tuple(nodes), prog.params, prog.tensors, meta=prog.meta))


def test_bench_inhibitor_ops_reports_no_per_score_multiply():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "inhibitor_ops.py")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "InhibitorAttention" in out.stdout and "DotAttention" in out.stdout
    assert out.stdout.strip().splitlines()[-1].startswith("OK: no Mul/MatMul/MatMulInteger/Div/Pow is applied per score")


def test_node_without_declared_output_is_named():
    prog = synth_program(SynthConfig())
    tensors = {k: v for k, v in prog.tensors.items() if k != "emb_ln"}
    with pytest.raises(UserError, match="node 'emb_ln' .*tensor 'emb_ln' has no declared format"):
        to_onnx(dataclasses.replace(prog, tensors=tensors))


def test_unused_node_type_is_not_registered():
    model = to_onnx(synth_program(SynthConfig(attention="dot")))
    assert "InhibitorAttention" not in {f.name for f in model.functions}


def test_integer_check_looks_inside_loop_bodies(small_model):
    """The isqrt of LayerNorm is a Loop: a float inside its body graph is found too."""
    bad = onnx.ModelProto()
    bad.CopyFrom(small_model)
    fn = next(f for f in bad.functions if f.name == "LayerNorm")
    body = next(n for n in fn.node if n.op_type == "Loop").attribute[0].g
    body.node.append(helper.make_node("Cast", [body.input[2].name], ["float_rem"], name="loop_cast", to=TensorProto.FLOAT))
    with pytest.raises(ExportError, match=r"function LayerNorm\[.*\]: node .*Loop.* subgraph 'body'.*'loop_cast'.*FLOAT"):
        validate(bad)
