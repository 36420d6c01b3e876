"""export.onnx_lift.from_onnx: the inverse of to_onnx, so the integer reference runs what a file holds."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from onnx import helper

from export import save_model, to_onnx
from export.onnx_lift import from_onnx
from models.errors import UserError
from quant.ir import spec
from quant.intops.reference import run_program
from quant.ir.program import IntProgram
from quant.intops.synth import SynthConfig, synth_program

VARIANTS = {
    "dot": SynthConfig(attention="dot", layers=2),
    "symmetric": SynthConfig(attention="symmetric", layers=2, seed=1),
    "inhibitor": SynthConfig(attention="inhibitor", layers=2, seed=2),
    "inhibitor_center_signed": SynthConfig(attention="inhibitor", center=True, signed=True, seed=3),
    "dot_16bit": SynthConfig(attention="dot", bits=16, seed=4),
}


def assert_same_program(got: IntProgram, want: IntProgram) -> None:
    assert got.nodes == want.nodes
    assert got.inputs == want.inputs and got.outputs == want.outputs
    assert dict(got.tensors) == dict(want.tensors)
    assert dict(got.meta) == dict(want.meta)
    assert sorted(got.params) == sorted(want.params)
    for name, arr in want.params.items():
        assert got.params[name].dtype == arr.dtype, name  # synth params are already in storage dtype
        np.testing.assert_array_equal(got.params[name], arr, err_msg=name)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def prog(request):
    return synth_program(VARIANTS[request.param])


def test_round_trip_reproduces_program(prog):
    lifted = from_onnx(to_onnx(prog))
    assert_same_program(lifted, prog)
    # and lowering the lifted program writes the very same file
    assert to_onnx(lifted).SerializeToString() == to_onnx(prog).SerializeToString()


def test_round_trip_through_file_runs_equal(prog, tmp_path):
    path = tmp_path / "m.onnx"
    save_model(to_onnx(prog), path)
    lifted = from_onnx(path)
    assert_same_program(lifted, prog)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, prog.meta["vocab_size"], (3, 9))
    mask = np.ones_like(ids)
    mask[1, 4:] = 0
    mask[2, 1:] = 0
    np.testing.assert_array_equal(run_program(lifted, ids, mask)["logits"].numpy(),
                                  run_program(prog, ids, mask)["logits"].numpy())


def test_left_out_defaults_come_back_explicit():
    prog = synth_program(SynthConfig(attention="dot"))
    defaults = dict(spec.OPS["Linear"].defaults)
    bare_nodes = tuple(dataclasses.replace(n, attrs={k: v for k, v in n.attrs.items()
                                                     if not (k in defaults and v == defaults[k])})
                       if n.op == "Linear" else n for n in prog.nodes)
    bare = dataclasses.replace(prog, nodes=bare_nodes)
    assert any("acc_bits" not in n.attrs for n in bare.nodes if n.op == "Linear")
    lifted = from_onnx(to_onnx(bare))
    assert lifted.nodes == prog.nodes  # the exporter writes every attribute, the lift keeps them


def test_rejects_model_without_metadata():
    model = to_onnx(synth_program(SynthConfig()))
    del model.metadata_props[:]
    with pytest.raises(UserError, match="hwsim.tensor_bits"):
        from_onnx(model)


def test_rejects_foreign_op():
    model = to_onnx(synth_program(SynthConfig()))
    model.graph.node.insert(1, helper.make_node("Relu", ["emb"], ["junk"], name="junk"))
    with pytest.raises(UserError, match="junk.*not an exported op"):
        from_onnx(model)


def test_rejects_broken_split_heads():
    model = to_onnx(synth_program(SynthConfig()))
    idx = next(i for i, n in enumerate(model.graph.node) if n.op_type == "Reshape")
    del model.graph.node[idx + 1]  # drop the Transpose half of a SplitHeads
    with pytest.raises(UserError, match="SplitHeads"):
        from_onnx(model)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        from_onnx(tmp_path / "nope.onnx")

