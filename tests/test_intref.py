"""quant.intops.reference.run_program on synthetic programs (all attention variants) and on hand-built graphs."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from quant.intops import OPS
from quant.ir.spec import OPS as SPEC
from quant.intops.reference import run_program
from quant.ir.program import IntProgram, Node, TensorInfo
from quant.intops.synth import SynthConfig, synth_program

VARIANTS = [("dot", False, False), ("inhibitor", False, False), ("inhibitor", True, True),
            ("inhibitor", True, False), ("symmetric", False, False)]


def _batch(cfg: SynthConfig, bsz: int = 3, n: int = 12, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.vocab, (bsz, n), generator=g)
    mask = torch.ones(bsz, n, dtype=torch.int64)
    mask[1, n // 3:] = 0
    return ids, mask


@pytest.mark.parametrize("attention,center,signed", VARIANTS)
def test_synth_runs_and_gives_int_logits(attention, center, signed):
    cfg = SynthConfig(attention=attention, center=center, signed=signed, layers=2)
    prog = synth_program(cfg)
    ids, mask = _batch(cfg)
    env = run_program(prog, ids, mask, keep_all=True)
    logits = env["logits"]
    assert logits.dtype == torch.int64 and logits.shape == (3, cfg.num_labels)
    assert prog.meta["attention"] == attention and isinstance(prog.meta["logits_exp"], int)
    assert set(env) >= set(prog.tensors) and set(prog.tensors) >= set(env)
    # activations neither vanish nor mostly saturate
    for node in prog.nodes:
        if node.op in ("LayerNorm", "Linear") and node.name != "logits":
            y = env[node.name].double()
            assert y.std() > 2, node.name
            assert (y.abs() >= 2 ** (cfg.bits - 1) - 1).double().mean() < 0.05, node.name


def test_synth_layout_and_determinism():
    prog = synth_program(SynthConfig(attention="symmetric", layers=1))
    ops = [n.op for n in prog.nodes]
    assert ops == ["Embed", "LayerNorm", "Linear", "ScaleChannels", "Linear", "SplitHeads", "SplitHeads",
                   "SplitHeads", "DotAttention", "MergeHeads", "Linear", "Add", "LayerNorm", "Linear", "Linear",
                   "Add", "LayerNorm", "TakeFirst", "Linear", "Linear"]
    assert prog.nodes[-1].attrs == {"shift": 0, "bits": 32, "relu": 0, "acc_bits": 32}
    for node in prog.nodes:
        assert set(node.attrs) == set(SPEC[node.op].attrs) and node.op in OPS
        assert all(type(v) is int for v in node.attrs.values())
    again = synth_program(SynthConfig(attention="symmetric", layers=1))
    assert all(np.array_equal(prog.params[k], again.params[k]) for k in prog.params)
    assert prog.nodes == again.nodes


def test_declared_width_too_small_raises():
    prog = synth_program(SynthConfig(attention="inhibitor"))
    ids, mask = _batch(SynthConfig())
    tensors = dict(prog.tensors)
    tensors["l0.res1"] = replace(tensors["l0.res1"], bits=4)
    bad = replace(prog, tensors=tensors)
    with pytest.raises(OverflowError, match=r"l0\.res1.*4-bit"):
        run_program(bad, ids, mask)


def _one_linear() -> IntProgram:
    params = {"w": np.full((4, 2), 2**30, dtype=np.int64), "b": np.zeros(2, dtype=np.int32)}
    tensors = {"input_ids": TensorInfo(64), "attention_mask": TensorInfo(64), "w": TensorInfo(32),
               "b": TensorInfo(32), "logits": TensorInfo(8)}
    node = Node("Linear", "fc", ("input_ids", "w", "b"), ("logits",), {"shift": 30, "bits": 8, "relu": 0})
    return IntProgram(nodes=(node,), params=params, tensors=tensors)


def test_internal_accumulator_overflow_names_node():
    prog = _one_linear()
    out = run_program(prog, torch.tensor([[0, 1, 0, 0]]))  # acc = 2**30 fits int32
    assert out["logits"].tolist() == [[1, 1]]
    with pytest.raises(OverflowError, match=r"'fc' \(Linear\).*fc/acc.*32-bit"):
        run_program(prog, torch.tensor([[1, 1, 0, 0]]))  # acc = 2**31


def test_param_outside_declared_width_raises():
    prog = synth_program(SynthConfig())
    tensors = dict(prog.tensors)
    tensors["emb.word"] = replace(tensors["emb.word"], bits=3)
    with pytest.raises(OverflowError, match="emb.word"):
        run_program(replace(prog, tensors=tensors), *_batch(SynthConfig()))


def test_bad_ids_and_lengths_are_named():
    cfg = SynthConfig(max_position=8)
    prog = synth_program(cfg)
    with pytest.raises(ValueError, match="token id 50"):
        run_program(prog, torch.tensor([[1, 50]]))
    with pytest.raises(ValueError, match="length 9"):
        run_program(prog, torch.zeros(1, 9, dtype=torch.int64))
