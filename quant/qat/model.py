"""The quantized encoder classifier: `quantize_model`, `calibrate`, `random_quant_model`.

`QuantClassifier` mirrors `models.encoder.SequenceClassifier` (same parameter names where the float
model has the parameter) with the modules of `quant.qat.modules` and `quant.qat.attention`; `forward_all` returns the logits and
an `EncoderOutput` (hidden states and attention contexts) for distillation. In eval mode after
`calibrate` its logits equal `quant.intops.reference.run_program(quant.qat.lower.lower(model), ...)` times
`2**-logits_exp` (docs/QUANT.md "Exactness").
"""
from __future__ import annotations

import torch
from brevitas.core.scaling.standalone import ParameterFromRuntimeStatsScaling
from torch import nn

from models.attention import Attention
from models.config import EncoderConfig
from models.encoder import EncoderOutput, SequenceClassifier
from models.errors import UserError
from quant.qat.attention import quantized_class
from quant.qat.config import QuantConfig
from quant.qat.modules import ActQuant, Fx, QEmbeddings, QLayerNorm, QLinear, residual_add


class QBlock(nn.Module):
    """Post-LN block: x = LN(x + out_lin(ctx)); x = LN(x + lin2(relu(lin1(x))))."""

    def __init__(self, cfg: EncoderConfig, qcfg: QuantConfig):
        super().__init__()
        self.attn = quantized_class(cfg.attention)(cfg, qcfg)
        self.attn_norm = QLayerNorm(cfg.hidden, cfg.layer_norm_eps, qcfg)
        self.ffn = nn.Module()
        self.ffn.lin1 = QLinear(cfg.hidden, cfg.ffn, qcfg, ActQuant(qcfg), relu=True)
        self.ffn.lin2 = QLinear(cfg.ffn, cfg.hidden, qcfg, ActQuant(qcfg))
        self.ffn.drop = nn.Dropout(cfg.dropout)
        self.ffn_norm = QLayerNorm(cfg.hidden, cfg.layer_norm_eps, qcfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Fx, mask: torch.Tensor) -> tuple[Fx, Fx]:
        dtype = x.value.dtype
        ctx = self.attn.context(x, mask)  # (B, n, D)
        x = self.attn_norm(residual_add(self.attn.out_lin(ctx).map(self.drop), x, self), dtype)
        h = self.ffn.lin2(self.ffn.lin1(x)).map(self.ffn.drop)
        return self.ffn_norm(residual_add(h, x, self), dtype), ctx


class QuantClassifier(nn.Module):
    """Quantized `SequenceClassifier`. Pooler: 'distilbert' = Linear + ReLU; 'bert' = Linear whose
    output saturates at [-1, 1) (a hard tanh for free: the requant's saturation at exp = bits - 1)."""

    def __init__(self, cfg: EncoderConfig, qcfg: QuantConfig):
        super().__init__()
        self.cfg, self.qcfg = cfg, qcfg
        self.encoder = nn.Module()
        self.encoder.embeddings = QEmbeddings(cfg, qcfg)
        self.encoder.blocks = nn.ModuleList(QBlock(cfg, qcfg) for _ in range(cfg.layers))
        hard_tanh = cfg.pooler == "bert"
        self.pool = QLinear(cfg.hidden, cfg.hidden, qcfg, ActQuant(qcfg, const_range=1.0 if hard_tanh else None),
                            relu=not hard_tanh)
        self.drop = nn.Dropout(cfg.dropout)
        self.classifier = QLinear(cfg.hidden, cfg.num_labels, qcfg, None)

    def forward_all(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, EncoderOutput]:
        if not self.training and not is_calibrated(self):
            raise UserError("the quantized model has no activation scales yet: run quant.qat.model.calibrate(model, "
                            "batches) (or train it) before evaluating it")
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask  # (B, n)
        dtype = self.pool.weight.dtype
        x = self.encoder.embeddings(input_ids, dtype)
        hidden, contexts = [x.value], []
        for block in self.encoder.blocks:
            x, ctx = block(x, mask)
            hidden.append(x.value)
            contexts.append(ctx.value)
        cls = x.map(lambda t: t[:, 0])  # (B, D)
        logits = self.classifier(self.pool(cls).map(self.drop)).value  # (B, num_labels)
        return logits, EncoderOutput(x.value, hidden, contexts)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_all(input_ids, attention_mask)[0]


# ---------------------------------------------------------------- building

def _float_to_quant_state(model: SequenceClassifier) -> dict[str, torch.Tensor]:
    """The float state dict renamed to QuantClassifier's names: each attention module's parameters
    through its variant's `quant_state` (the inhibitor's gamma/beta -> log2 domain, remainders folded)."""
    variant = quantized_class(model.cfg.attention)
    state = {name: value.detach().clone() for name, value in model.state_dict().items()}
    for attn in [name for name, module in model.named_modules() if isinstance(module, Attention)]:
        own = {k[len(attn) + 1:]: state.pop(k) for k in list(state) if k.startswith(attn + ".")}
        state.update({f"{attn}.{k}": v for k, v in variant.quant_state(attn, own, model.cfg).items()})
    return state


def quantize_model(float_model: SequenceClassifier, qcfg: QuantConfig) -> QuantClassifier:
    """A `QuantClassifier` with the float model's weights copied (activation scales still to calibrate).

    The FFN activation becomes `qcfg.ffn_activation` (ReLU) whatever the float model used.
    """
    qmodel = QuantClassifier(float_model.cfg, qcfg).to(next(float_model.parameters()).dtype)
    missing, unexpected = qmodel.load_state_dict(_float_to_quant_state(float_model), strict=False)
    if unexpected:
        raise UserError(f"float weights without a quantized counterpart: {unexpected[:5]}")
    not_quant = [k for k in missing if ".quant." not in k and "act." not in k]
    if not_quant:
        raise UserError(f"quantized parameters missing from the float model: {not_quant[:5]}")
    return qmodel.train(float_model.training)


def _stats_scalers(model: nn.Module) -> list[ParameterFromRuntimeStatsScaling]:
    return [m for m in model.modules() if isinstance(m, ParameterFromRuntimeStatsScaling)]


def is_calibrated(model: nn.Module) -> bool:
    return all(m.counter > m.collect_stats_steps for m in _stats_scalers(model))


@torch.no_grad()
def calibrate(qmodel: QuantClassifier, batches) -> QuantClassifier:
    """Initialise every activation scale from statistics on `batches` (dicts with input_ids and
    attention_mask, or (input_ids, attention_mask) pairs): the average over batches of the
    `act_percentile` percentile of |x|, rounded up to a power of two. Dropout is off meanwhile."""
    batches = list(batches)
    if not batches:
        raise UserError("calibrate needs at least one batch")
    was_training = qmodel.training
    qmodel.train()
    for m in qmodel.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    for batch in batches:
        ids, mask = (batch["input_ids"], batch.get("attention_mask")) if isinstance(batch, dict) else batch
        qmodel.forward_all(ids, mask)
    for scaler in _stats_scalers(qmodel):
        if scaler.counter == 0:
            raise UserError("an activation quantizer saw no data during calibration")
        scaler.init_scale()
    return qmodel.train(was_training)


ARCHS: dict[str, EncoderConfig] = {
    "distilbert-base": EncoderConfig(hidden=768, layers=6, heads=12, ffn=3072, max_position=512,
                                     pooler="distilbert"),
    "minilm": EncoderConfig(hidden=384, layers=6, heads=12, ffn=1536, max_position=512, type_vocab_size=2,
                            pooler="bert"),
}


def random_quant_model(arch: str | EncoderConfig, attention: str = "dot", bits: int = 8, seed: int = 0,
                       calib_batches: int = 2, calib_len: int = 32, qcfg: QuantConfig | None = None
                       ) -> QuantClassifier:
    """A randomly initialised float model of `arch`'s dimensions ('distilbert-base', 'minilm' or an
    EncoderConfig) with `attention`, quantized at W`bits`A`bits` (or at `qcfg`, e.g. a
    `quant.qat.widths.WidthSetting`'s) and calibrated on random token ids (for cost studies:
    `hwsim export --init random`). Deterministic in `seed`; returned in eval mode."""
    if isinstance(arch, str):
        if arch not in ARCHS:
            raise UserError(f"unknown architecture {arch!r}: use one of {', '.join(ARCHS)} or an EncoderConfig")
        arch = ARCHS[arch]
    cfg = arch.replace(attention=attention, activation="relu")
    torch.manual_seed(seed)
    qcfg = QuantConfig(weight_bits=bits, act_bits=bits) if qcfg is None else qcfg
    qmodel = quantize_model(SequenceClassifier(cfg).eval(), qcfg)
    gen = torch.Generator().manual_seed(seed)
    n = min(calib_len, cfg.max_position)
    batches = []
    for _ in range(calib_batches):
        ids = torch.randint(1, cfg.vocab_size, (2, n), generator=gen)
        mask = torch.ones_like(ids)
        mask[1, n // 2:] = 0
        batches.append((ids, mask))
    return calibrate(qmodel, batches).eval()
