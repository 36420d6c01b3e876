"""`lower(qmodel) -> IntProgram`: a calibrated `QuantClassifier` as integer ops (layout of `quant.ir.encoder`).

Every integer weight, bias and table comes from the quantizers (Brevitas `quant_weight().int()`,
the bias quantizer at the input's scale, `fixed_point_weight` for tables, gamma and c); every shift
is a difference of exponents (docs/QUANT.md). Each attention variant lowers its own queries and keys
and its attention node (`quant.qat.attention.QAttention.lower_qk`, `QCore.lower`).
`intref.run_program(lower(m), ids, mask)['logits'] * 2**-meta['logits_exp']` equals `m.eval()(ids, mask)`.
"""
from __future__ import annotations

import numpy as np
import torch

from models.errors import UserError
from quant.intops import linear_acc_bits
from quant.ir import spec, widths
from quant.ir.spec import CHANNEL_SHIFT_BITS
from quant.ir.encoder import Part, build_encoder
from quant.ir.program import IntProgram, Node, TensorInfo, storage_dtype
from quant.qat.model import QuantClassifier, is_calibrated
from quant.qat.modules import QLayerNorm, QLinear, round_half_up


class Builder:
    """Nodes, params and declared formats of the program under construction."""

    def __init__(self, act_bits: int) -> None:
        self.bits = act_bits
        self.nodes: list[Node] = []
        self.params: dict[str, np.ndarray] = {}
        self.tensors = {"input_ids": TensorInfo(64), "attention_mask": TensorInfo(64)}

    def exp(self, name: str) -> int:
        return self.tensors[name].exp

    def width(self, name: str) -> int:
        return self.tensors[name].bits

    def param(self, name: str, value: torch.Tensor, bits: int, exp: int | None, signed: bool = True) -> str:
        info = TensorInfo(bits, signed, exp)
        self.params[name] = value.detach().to(torch.int64).numpy().astype(storage_dtype(info))
        self.tensors[name] = info
        return name

    def node(self, op: str, name: str, inputs: tuple[str, ...], out_bits: int, exp: int | None,
             **attrs: int) -> str:
        attrs = {k: tuple(int(x) for x in v) if spec.is_per_head(v) else int(v) for k, v in attrs.items()}
        self.nodes.append(Node(op, name, inputs, (name,), attrs))
        self.tensors[name] = TensorInfo(out_bits, True, exp)
        return name

    def linear(self, name: str, x: str, lin: QLinear, bias_bits: int) -> str:
        """A Linear node; with per-channel weight scales, w and b declare the coarsest exponent and the
        fourth input s holds each column's offset from it (`quant.intops.linear`)."""
        w_int, b_int, exps = lin.integer_params(self.exp(x))
        exp_w = int(exps.min())
        acc_bits = linear_acc_bits(w_int, b_int, self.tensors[x].bits)  # worst case over declared x
        w = self.param(f"{name}.w", w_int, int(lin.quant_weight().bit_width), exp_w)
        b = self.param(f"{name}.b", b_int, bias_bits, self.exp(x) + exp_w)
        inputs = (x, w, b)
        if lin.per_channel:
            offsets = exps - exp_w
            if int(offsets.max()) >= 1 << CHANNEL_SHIFT_BITS:  # FlooredAbsMax keeps them below
                raise UserError(f"{name}: per-channel weight exponents span {int(offsets.max())}, more than "
                                f"{CHANNEL_SHIFT_BITS}-bit shift offsets hold; quantize with per_channel=False")
            inputs += (self.param(f"{name}.s", offsets, CHANNEL_SHIFT_BITS, None, signed=False),)
        if lin.act is None:  # classifier: the accumulator itself
            return self.node("Linear", name, inputs, 32, self.exp(x) + exp_w, shift=0, bits=32, relu=0,
                             acc_bits=acc_bits)
        exp_y = lin.act.exp
        return self.node("Linear", name, inputs, lin.act.bits, exp_y, shift=self.exp(x) + exp_w - exp_y,
                         bits=lin.act.bits, relu=int(lin.relu), acc_bits=acc_bits)

    def layernorm(self, name: str, x: str, ln: QLayerNorm) -> str:
        gamma, eg, beta, eb = ln.gamma_beta()
        g = self.param(f"{name}.gamma", round_half_up(gamma * 2.0 ** eg), ln.qcfg.weight_bits, eg)
        b = self.param(f"{name}.beta", round_half_up(beta * 2.0 ** eb), ln.qcfg.bias_bits, eb)
        exp_y = ln.act.exp
        return self.node("LayerNorm", name, (x, g, b), ln.act.bits, exp_y, eps=ln.int_eps(self.exp(x)),
                         norm_frac=ln.qcfg.norm_frac, shift=eb - exp_y, bits=ln.act.bits)

    def add(self, name: str, a: str, b: str) -> str:
        top = max(self.exp(a), self.exp(b))
        return self.node("Add", name, (a, b), 32, top, la=top - self.exp(a), lb=top - self.exp(b))


class _ModelParts(Builder):
    """The `quant.ir.encoder.EncoderParts` of a calibrated `QuantClassifier`: each part from its module."""

    def __init__(self, model: QuantClassifier) -> None:
        super().__init__(model.qcfg.act_bits)
        self.model, self.heads, self.bias_bits = model, model.cfg.heads, model.qcfg.bias_bits

    def embed(self, name: str) -> str:
        emb = self.model.encoder.embeddings
        names, exps = [], []
        for short, table in emb.tables():
            w, scale = table.quantized()
            exp = int(round(-np.log2(float(scale))))
            names.append(self.param(f"{name}.{short}", round_half_up(w * 2.0 ** exp), table.bits, exp))
            exps.append(exp)
        top = max(exps)
        shifts = {"lw": 0, "lp": 0, "lt": 0, **dict(zip(("lw", "lp", "lt"), (top - e for e in exps)))}
        return self.node("Embed", name, ("input_ids", *names), 32, top, **shifts)

    def layernorm_at(self, part: Part, x: str) -> str:
        if part.layer is None:
            return self.layernorm(part.name, x, self.model.encoder.embeddings.norm)
        block = self.model.encoder.blocks[part.layer]
        return self.layernorm(part.name, x, {"ln1": block.attn_norm, "ln2": block.ffn_norm}[part.role])

    def linear_at(self, part: Part, x: str) -> str:
        if part.layer is None:
            lin = {"pre": self.model.pool, "logits": self.model.classifier}[part.role]
        else:
            block = self.model.encoder.blocks[part.layer]
            lin = {"v": block.attn.v_lin, "o": block.attn.out_lin, "ffn1": block.ffn.lin1,
                   "ffn2": block.ffn.lin2}[part.role]
        return self.linear(part.name, x, lin, self.bias_bits)

    def queries_keys(self, layer: int, prefix: str, x: str) -> tuple[str, str]:
        return self.model.encoder.blocks[layer].attn.lower_qk(self, prefix, x, self.bias_bits)

    def attention_core(self, layer: int, name: str, inputs: tuple[str, str, str, str]) -> str:
        return self.model.encoder.blocks[layer].attn.core.lower(self, name, inputs)


def lower(model: QuantClassifier, tokenizer: str | None = None) -> IntProgram:
    """The integer program of a calibrated `QuantClassifier` (the model is put in eval mode); UserError
    naming the node when the width analysis (`quant.ir.widths.check`) finds an accumulator that its
    declared width cannot hold."""
    if not isinstance(model, QuantClassifier):
        raise UserError(f"lower() takes a quant.qat.model.QuantClassifier, got {type(model).__name__}")
    if not is_calibrated(model):
        raise UserError("the quantized model is not calibrated: run quant.qat.model.calibrate(model, batches) first")
    model.eval()
    cfg, qcfg = model.cfg, model.qcfg
    bld = _ModelParts(model)
    with torch.no_grad():
        logits = build_encoder(bld, len(model.encoder.blocks))
    meta = {"vocab_size": cfg.vocab_size, "max_position": cfg.max_position, "hidden": cfg.hidden,
            "heads": cfg.heads, "layers": cfg.layers, "ffn": cfg.ffn, "attention": cfg.attention,
            "bits": qcfg.act_bits, "weight_bits": qcfg.weight_bits, "num_labels": cfg.num_labels,
            "logits_exp": bld.exp(logits), **model.encoder.blocks[0].attn.lower_meta(),
            "pooler": cfg.pooler, "tokenizer": tokenizer}
    prog = IntProgram(nodes=tuple(bld.nodes), params=bld.params, tensors=bld.tensors, meta=meta)
    try:
        widths.check(prog)  # every accumulator proven to fit before anything runs it
    except widths.WidthError as err:
        raise UserError(str(err)) from err
    return prog
