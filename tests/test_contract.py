"""The ONNX contract (`quant.ir.contract`) is written in one place: the domain and the metadata keys
that the exporter writes are what hwsim reads, with their types checked on both sides."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from export import to_onnx
from export.onnx_lift import from_onnx
from hwsim.sim.graph import SimError, load_plan
from models.errors import UserError
from quant.intops.synth import SynthConfig, synth_program
from quant.ir import contract
from tests.test_spec import string_literals

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "quant" / "ir" / "contract.py"


@pytest.mark.parametrize("literal", [contract.DOMAIN, contract.TENSOR_BITS, contract.TENSOR_SIGNED,
                                     contract.TENSOR_EXP, contract.META])
def test_the_domain_and_metadata_keys_are_spelled_once(literal):
    spelled = [str(p.relative_to(ROOT)) for pkg in ("models", "quant", "export", "hwsim")
               for p in sorted((ROOT / pkg).rglob("*.py")) if literal in string_literals(p)]
    assert spelled == [str(CONTRACT.relative_to(ROOT))]


def test_metadata_round_trip():
    prog = synth_program(SynthConfig(attention="inhibitor", center=True))
    props = contract.metadata_props(prog.tensors, {**prog.meta, "max_length": 12, "tokenizer": None})
    tensors, meta = contract.read_metadata(props)
    assert tensors == dict(prog.tensors)
    assert meta == {**prog.meta, "max_length": 12, "tokenizer": None}


@pytest.mark.parametrize("meta, message", [({"max_lenght": 12}, "key 'max_lenght' is not declared"),
                                           ({"max_length": "12"}, "max_length='12' is not of type int"),
                                           ({"center": 1}, "center=1 is not of type bool"),
                                           ({"heads": True}, "heads=True is not of type int")])
def test_export_refuses_an_undeclared_or_mistyped_meta_key(meta, message):
    prog = synth_program(SynthConfig())
    with pytest.raises(UserError, match=message):
        to_onnx(dataclasses.replace(prog, meta={**prog.meta, **meta}))


def _with_meta(text: str):
    model = to_onnx(synth_program(SynthConfig()))
    next(p for p in model.metadata_props if p.key == contract.META).value = text
    return model


def test_readers_refuse_a_mistyped_meta_value():
    model = _with_meta('{"vocab_size": "many"}')
    with pytest.raises(SimError, match="malformed hwsim metadata.*vocab_size='many' is not of type int"):
        load_plan(model)
    with pytest.raises(UserError, match="malformed hwsim metadata"):
        from_onnx(model)
    with pytest.raises(SimError, match="hwsim.meta is not a JSON object"):
        load_plan(_with_meta("[1, 2]"))


def test_readers_keep_a_key_a_newer_exporter_wrote():
    plan = load_plan(_with_meta('{"vocab_size": 50, "from_the_future": [1]}'))
    assert plan.meta == {"vocab_size": 50, "from_the_future": [1]}
