"""`--format qonnx`: the Brevitas QONNX export of the same quantized model, for FINN/QONNX users.

What it covers: every Brevitas quantizer of the model (weights, biases, activations) becomes a
QONNX `Quant` node with its scale, zero point and bit width, and the linear layers become float
MatMul/Gemm between them, as QONNX tools expect. What it does not cover: the integer
LayerNorm, softmax and inhibitor attention run as straight-through functions in PyTorch, so the
TorchScript trace records them as float arithmetic (Sub/Div/Floor/..., plus the float op used for
the gradient). The QONNX graph is therefore not integer-only and not bit-exact: our integer-only
graph (`hwsim export` without --format) is the contract that hwsim and onnxruntime execute.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from models.errors import UserError
from models.files import atomic_path


def export_qonnx_model(qmodel, out: Path, seq_len: int = 16) -> None:
    """Trace `qmodel` (eval mode) with Brevitas' TorchScript QONNX manager; atomic write."""
    from brevitas.export import export_qonnx

    vocab = qmodel.cfg.vocab_size
    ids = torch.randint(0, vocab, (1, min(seq_len, qmodel.cfg.max_position)))
    mask = torch.ones_like(ids)
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            export_qonnx(qmodel.eval(), args=(ids, mask), export_path=str(tmp), dynamo=False)
        except Exception as err:  # Brevitas/torch tracing failures carry long internal traces
            raise UserError(f"Brevitas QONNX export failed ({type(err).__name__}: {str(err).splitlines()[0]}); "
                            f"the integer-only ONNX export (without --format qonnx) is unaffected") from err
