"""Distillation losses, the inhibitor calibration and the layer-by-layer initialisation step.

Task-specific (`--distill task`), on labelled batches (float students and QAT alike):
    loss = alpha_kl * KL(softmax(t / T) || softmax(s / T)) * T^2 + alpha_ce * CE(s, y)
         + alpha_hidden * mean over aligned layers of hidden(s_l, t_l) (`--hidden-layers last`: the last only)
         + alpha_context * attention-context MSE (equal widths only)
CE is averaged over labelled examples only: transfer-set examples carry label -1 (`UNLABELLED`) and
are taught by the teacher's logits alone (`quant.data.transfer`).
Task-agnostic (`--distill agnostic`), labels unused (REFERENCE.md section 2, without the MLM term
since the teacher has no MLM head):
    loss = alpha_hidden * hidden alignment + alpha_context * attention-context MSE
Either mode adds `score_weight` * score distillation when it is on (`--score-distill W`, float inhibitor
students): per layer and head the KL between the teacher's attention probabilities
softmax(Q K^T / sqrt(d)) and the student's softmax(-Z / tau) (`score_alignment`), also in the
layer-by-layer init (`layerwise_init`).
Regression tasks (one output) replace KL by MSE between logits and CE by MSE to the target.

`hidden(s, t)` is `1 - cos(s, t)` per token ('cosine') or the mean squared error ('mse'), averaged
over valid tokens (mask 1). A student narrower than its teacher maps its hidden states through a
learned `Linear(student, teacher)` per aligned layer (`HiddenProjection`); equal widths use identity.
Student layer l (of Ls) aligns with teacher layer round(l * Lt / Ls) (both counted from the
embeddings output = 0), so equal depths align one to one.

An inhibitor student built from a dot-product teacher's weights starts dead with the published
initial scalars (gamma = beta = 1): on MiniLM every Z_ij exceeds every |V_jk|, so H = 0 and no
gradient flows, and where it does not, H sums n values where softmax averages them (n times too
large). `calibrate_inhibitor` picks gamma and beta per layer from the teacher's contexts first.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import UserError
from quant.train.config import DistillConfig

UNLABELLED = -1  # label of a transfer-set example: no cross-entropy, the teacher's logits teach it


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Teacher index aligned with each student index 0..student_layers (0 = embeddings output)."""
    return [round(i * teacher_layers / student_layers) for i in range(student_layers + 1)]


class HiddenProjection(nn.Module):
    """One map per aligned hidden state: identity for equal widths, else a learned Linear."""

    def __init__(self, student_width: int, teacher_width: int, count: int):
        super().__init__()
        same = student_width == teacher_width
        self.maps = nn.ModuleList(nn.Identity() if same else nn.Linear(student_width, teacher_width)
                                  for _ in range(count))

    def forward(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.maps[i](x)


def kl_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher/T || student/T) * T^2, mean over the batch (Hinton et al.)."""
    log_p = F.log_softmax(student / temperature, dim=-1)
    log_q = F.log_softmax(teacher / temperature, dim=-1)
    return F.kl_div(log_p, log_q, log_target=True, reduction="batchmean") * temperature ** 2


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for classification (examples labelled `UNLABELLED` left out; 0 when none is
    labelled), MSE for regression (one output)."""
    if logits.shape[-1] == 1:
        return F.mse_loss(logits[:, 0], labels.to(logits.dtype))
    labelled = labels != UNLABELLED
    if not bool(labelled.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[labelled], labels[labelled])


def token_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean over valid tokens of 1 - cos (kind 'cosine') or of the per-token MSE ('mse'); (B, n, D) inputs."""
    if kind == "cosine":
        per_token = 1 - F.cosine_similarity(student, teacher, dim=-1)  # (B, n)
    else:
        per_token = (student - teacher).pow(2).mean(-1)  # (B, n)
    keep = mask.to(per_token.dtype)
    return (per_token * keep).sum() / keep.sum().clamp(min=1)


def hidden_alignment(student: list[torch.Tensor], teacher: list[torch.Tensor], mask: torch.Tensor,
                     kind: str, proj: HiddenProjection, layers: str = "all") -> torch.Tensor:
    """Sum over aligned layers (embeddings output excluded; `layers="last"`: the last layer only) of
    `token_loss`, divided by the layer count."""
    pairs = list(enumerate(layer_map(len(student) - 1, len(teacher) - 1)))[1:]
    if layers == "last":
        pairs = pairs[-1:]
    total = sum(token_loss(proj(i, student[i]), teacher[j].detach(), mask, kind) for i, j in pairs)
    return total / len(pairs)


def context_alignment(student: list[torch.Tensor], teacher: list[torch.Tensor], mask: torch.Tensor
                      ) -> torch.Tensor:
    """MSE between aligned attention contexts, averaged over layers (equal widths required)."""
    blocks = layer_map(len(student), len(teacher))[1:]  # block i ends at hidden state i + 1
    total = sum(token_loss(student[i], teacher[j - 1].detach(), mask, "mse") for i, j in enumerate(blocks))
    return total / len(blocks)


def score_kl(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(softmax(teacher) || softmax(student)) over the valid keys of each row of (B, H, n, n) logits,
    averaged over heads and valid query rows (mask (B, n), 1 = token): padded keys take no probability
    on either side, padded queries are left out. 0 exactly when the logits are equal."""
    keep = mask[:, None, None, :].bool()  # (B, 1, 1, n) keys
    low = torch.finfo(student.dtype).min
    log_s = student.masked_fill(~keep, low).log_softmax(-1)  # (B, H, n, n)
    log_t = teacher.masked_fill(~keep, low).log_softmax(-1)
    per_row = torch.where(keep, log_t.exp() * (log_t - log_s), 0.0).sum(-1)  # (B, H, n)
    rows = mask[:, None, :].to(per_row.dtype).expand_as(per_row)  # (B, H, n) queries
    return (per_row * rows).sum() / rows.sum().clamp(min=1)


def score_alignment(inhibition: list[torch.Tensor], teacher: list[torch.Tensor], mask: torch.Tensor,
                    tau: float) -> torch.Tensor:
    """Mean over the student's layers of `score_kl(-Z / tau, teacher logits)`: `inhibition` the
    student's Z per layer (`InhibitorAttention.inhibition`, in the values' units: gamma/sqrt(d) times
    the L1 distances, centred, plus alpha, ReLU), `teacher` the aligned teacher layers' Q K^T / sqrt(d)
    (`TeacherScores`)."""
    return sum(score_kl(-z / tau, t.detach(), mask) for z, t in zip(inhibition, teacher)) / len(inhibition)


class TeacherScores:
    """The teacher's attention logits Q K^T / sqrt(d) of every student layer's aligned teacher layer
    (`layer_map`), from the teacher's hidden states (the input of each block), so that a teacher store
    (`quant.train.store`), which holds hidden states but no probabilities, serves them unchanged:
    they are the teacher's own up to the float rounding of the stored hidden states."""

    def __init__(self, teacher: nn.Module, student_layers: int, student_heads: int):
        attns = [block.attn for block in teacher.encoder.blocks]
        if not all(callable(getattr(a, "scores", None)) for a in attns):
            raise UserError(f"score distillation needs a teacher with softmax(Q K^T / sqrt(d)) attention; "
                            f"its attention is {teacher.cfg.attention!r}: use a dot-product teacher")
        if teacher.cfg.heads != student_heads:
            raise UserError(f"score distillation pairs heads: the teacher has {teacher.cfg.heads}, the student "
                            f"{student_heads}; use a student with the teacher's heads")
        self.attns = attns
        self.blocks = [j - 1 for j in layer_map(student_layers, len(attns))[1:]]  # block i ends at hidden i + 1

    @torch.no_grad()
    def __call__(self, hidden_states: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per student layer, the logits (B, H, n, n) of its teacher layer from that layer's input."""
        return [self.attns[j].scores(hidden_states[j]) for j in self.blocks]

    def to(self, device) -> "TeacherScores":
        for attn in self.attns:
            attn.to(device)
        return self


def distill_loss(cfg: DistillConfig, mask: torch.Tensor, labels: torch.Tensor,
                 student: tuple, teacher: tuple | None, proj: HiddenProjection | None,
                 scores: tuple[list, list] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its named parts; `student`/`teacher` are (logits, hidden_states, contexts);
    `scores`: (the student's Z per layer, the teacher's logits per layer) under score distillation,
    whose part "att" is `score_weight` times `score_alignment`."""
    s_logits, s_hidden, s_ctx = student
    parts: dict[str, torch.Tensor] = {}
    if cfg.mode in ("none", "task"):
        parts["ce"] = task_loss(s_logits, labels)
        if cfg.mode == "none":
            return parts["ce"], {"ce": parts["ce"].item()}
    t_logits, t_hidden, t_ctx = teacher
    if cfg.mode == "task":
        parts["ce"] = cfg.alpha_ce * parts["ce"]
        if s_logits.shape[-1] == 1:
            parts["kl"] = cfg.alpha_kl * F.mse_loss(s_logits, t_logits.detach())
        else:
            parts["kl"] = cfg.alpha_kl * kl_loss(s_logits, t_logits.detach(), cfg.temperature)
    if cfg.alpha_hidden:
        parts["hid"] = cfg.alpha_hidden * hidden_alignment(s_hidden, t_hidden, mask, cfg.hidden_loss, proj,
                                                                 cfg.hidden_layers)
    same_width = bool(s_ctx) and s_ctx[0].shape[-1] == t_ctx[0].shape[-1]
    if cfg.alpha_context and s_ctx and (same_width or cfg.mode == "agnostic"):  # task: skipped if narrower
        parts["ctx"] = cfg.alpha_context * context_alignment(s_ctx, t_ctx, mask)
    if cfg.score_weight and scores is not None:
        parts["att"] = cfg.score_weight * score_alignment(*scores, mask, cfg.score_temperature)
    total = sum(parts.values())
    return total, {k: v.item() for k, v in parts.items()}


# ---------------------------------------------------------------- layer-by-layer initialisation

def attention_core_parameters(attn: nn.Module) -> list[nn.Parameter]:
    """The parameters that shape the mixture: q/k/v (or the shared qk), scalars, coefficients;
    everything of the attention module except its output projection `out_lin`."""
    return [p for name, p in attn.named_parameters() if not name.startswith("out_lin.")]


def scalar_ids(module: nn.Module) -> set[int]:
    """The ids of the parameters of `module` that train at their own learning rate: those its
    attention modules declare (`scalar_parameters()`, e.g. the inhibitor's gamma, beta and alpha)."""
    return {id(p) for m in module.modules() if callable(getattr(m, "scalar_parameters", None))
            for p in m.scalar_parameters()}


def rounded_ids(module: nn.Module) -> set[int]:
    """The ids of the parameters of `module` that its attention modules round straight-through and
    train at `quant.train.state.rounded_lr` (`rounded_parameters()`: the quantized inhibitor's log2
    scalars under the log parametrisation)."""
    return {id(p) for m in module.modules() if callable(getattr(m, "rounded_parameters", None))
            for p in m.rounded_parameters()}


def fit_side_by_side(student: nn.Module, teacher: nn.Module, params: list[nn.Parameter],
                     batches: Iterable[dict[str, torch.Tensor]], layer_losses, lr: float, scalar_lr: float,
                     progress=None, decay_steps: int | None = None) -> list[float]:
    """The loop of the two teacher-forced stages (`layerwise_init`, `blockwise_init`): per batch one
    teacher forward (or store read), `layer_losses(teacher_output, mask)` (one loss per layer) and one
    AdamW step on their sum over `params` (those of them the attention declares scalars, `scalar_ids`,
    at `scalar_lr`, the rest at `lr`; AdamW is per parameter, so this equals one optimizer per layer).
    `decay_steps`: the rates decay linearly to 0 over that many batches, which is then the stage's
    length. Returns per layer the mean loss over the last quarter of the batches; leaves the student
    in train mode, the teacher in eval mode, the student's gradients cleared."""
    teacher.eval()
    student.train()
    scalars = scalar_ids(student)
    groups = [{"params": [p for p in params if id(p) not in scalars], "lr": lr},
              {"params": [p for p in params if id(p) in scalars], "lr": scalar_lr}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=0.0, fused=True)
    sched = None
    if decay_steps is not None:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: max(0.0, 1.0 - step / max(1, decay_steps)))
        batches = (b for _, b in zip(range(decay_steps), batches))
    history: list[list[float]] = []
    for step, b in enumerate(batches):
        with torch.no_grad():
            out = teacher.forward_all(b["input_ids"], b["attention_mask"])[1]
        losses = layer_losses(out, b["attention_mask"])
        opt.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()
        opt.step()
        if sched is not None:
            sched.step()
        history.append([x.item() for x in losses])
        if progress is not None:
            progress(step, history[-1])
    student.zero_grad(set_to_none=True)
    if not history:
        return []
    tail = history[-max(1, len(history) // 4):]
    return [sum(h[layer] for h in tail) / len(tail) for layer in range(len(tail[0]))]


def layerwise_init(student: nn.Module, teacher: nn.Module, batches: Iterable[dict[str, torch.Tensor]],
                   lr: float = 1e-4, scalar_lr: float = 1e-3, progress=None,
                   scores: tuple[float, float, TeacherScores] | None = None) -> list[float]:
    """Fit every student layer's attention context to the teacher's, one pass over `batches`.

    Both are float `SequenceClassifier`s of equal depth and width (the teacher may be its
    `quant.train.store.TeacherStore`). Layer l of the student gets the teacher's hidden state l as
    input (teacher forcing), so the layers do not interact and are fitted side by side
    (`fit_side_by_side`): per layer the MSE over valid tokens between its context and the teacher's
    layer-l context. Only `attention_core_parameters` train: q/k/v at `lr`, the attention's declared
    scalars at `scalar_lr`. `batches` is typically the shuffled whole training split
    (`quant.train.runtime.initialise_student`). Returns per layer the mean loss over the last quarter
    of the batches. `scores` = (weight W, tau, the teacher's `TeacherScores`): score distillation, each
    layer's loss plus W times `score_kl` of its softmax(-Z / tau) (Z from the teacher's hidden state l
    as well) and the teacher's layer-l probabilities.
    """
    blocks = student.encoder.blocks

    def layer_losses(out, mask):
        losses = [token_loss(block.attn.context(out.hidden_states[layer], mask), out.contexts[layer], mask, "mse")
                  for layer, block in enumerate(blocks)]
        if scores is not None:
            weight, tau, target = scores
            losses = [loss + weight * score_kl(-block.attn.inhibition(out.hidden_states[layer], mask) / tau, t, mask)
                      for layer, (loss, block, t) in enumerate(zip(losses, blocks, target(out.hidden_states)))]
        return losses

    core = [p for block in blocks for p in attention_core_parameters(block.attn)]
    return fit_side_by_side(student, teacher, core, batches, layer_losses, lr, scalar_lr, progress)


def blockwise_init(student: nn.Module, teacher: nn.Module, batches: Iterable[dict[str, torch.Tensor]], steps: int,
                   lr: float = 1e-4, scalar_lr: float = 1e-3, progress=None) -> list[float]:
    """Fit every student block whole to the teacher's block, `steps` batches of `batches`.

    The stage after `layerwise_init`: there only the attention's mixture learns, against the teacher's
    contexts; here each block's every parameter (attention with its output projection, FFN, both
    LayerNorms) learns to map the teacher's hidden state l to the teacher's hidden state l + 1
    (teacher forcing: the blocks do not interact and train side by side, `fit_side_by_side`), so the
    FFN and LayerNorms adapt to the student's attention before end-to-end distillation. Loss per block:
    MSE over valid tokens (`token_loss`); the rates (`lr`, the attention's declared scalars at
    `scalar_lr`) decay linearly to 0 over `steps`. Embeddings and the head are not touched. Returns per
    block the mean loss over the last quarter of the batches."""
    blocks = student.encoder.blocks

    def block_losses(out, mask):
        return [token_loss(block(out.hidden_states[layer], mask)[0], out.hidden_states[layer + 1], mask, "mse")
                for layer, block in enumerate(blocks)]

    params = [p for block in blocks for p in block.parameters()]
    return fit_side_by_side(student, teacher, params, batches, block_losses, lr, scalar_lr, progress, decay_steps=steps)


# ---------------------------------------------------------------- inhibitor calibration

def _best_fit(sums: dict[tuple[int, float], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> dict | None:
    """The candidate (e, alpha) whose least-squares beta leaves the smallest residual, from the sums
    <h, t>, <h, h>, <t, t> of its context h and the teacher's t over valid tokens: beta = <h, t> / <h, h>,
    residual = 1 - beta <h, t> / <t, t> (|beta h - t|^2 / |t|^2 at the optimum). Candidates with
    <h, t> <= 0 are skipped (beta must be positive: the integer model stores log2 beta); None if all are."""
    best = None
    for (e, a), (ht, hh, tt) in sums.items():
        ht, hh, tt = float(ht), float(hh), float(tt)
        if ht <= 0 or tt <= 0:
            continue
        beta = ht / hh
        residual = 1.0 - beta * ht / tt
        if best is None or residual < best["residual"]:
            best = {"exponent": float(e), "alpha": float(a), "beta": beta, "residual": residual}
    return best


CALIBRATION_EXPONENTS = tuple(range(-10, 4))  # gamma/sqrt(d) = 2**e candidates
CALIBRATION_ALPHAS = (0.125, 0.25, 0.5, 1.0, 2.0)  # alpha candidates (a student with alpha)


@torch.no_grad()
def calibrate_inhibitor(student: nn.Module, teacher: nn.Module, batches: Iterable[dict[str, torch.Tensor]],
                        exponents: Iterable[int] = CALIBRATION_EXPONENTS,
                        alphas: Iterable[float] = CALIBRATION_ALPHAS) -> list[dict[str, float]]:
    """Set each inhibitor layer's gamma, alpha and beta so that its context best matches the teacher's.

    Both are float `SequenceClassifier`s of equal depth and width (the teacher may be its
    `quant.train.store.TeacherStore`); every student layer has inhibitor attention (`gamma`, `beta`
    parameters, `alpha` unless disabled). Layer l gets the teacher's hidden state l (teacher forcing);
    its queries, keys, values and L1 scores are computed once and reused by every candidate. For each candidate pair gamma/sqrt(d) = 2**e (a power
    of two, as the integer model folds it into a shift) and alpha in `alphas` (alpha as it is when the
    student has none), beta is the least-squares fit of the student's context to the teacher's over
    valid tokens; the candidate with the smallest residual is kept. Dropout is off while fitting.
    Returns per layer {"exponent", "alpha", "beta", "residual"}, the residual relative to the teacher
    contexts' squared norm (1.0: no better than zero; alpha 0.0 when the student has none). The
    teacher's q/k/v are not changed. A student with per-head scalars (`InhibitorOptions.per_head`) gets
    the best candidate of each head on that head's context: "exponent", "alpha" and "beta" are then
    lists over the heads and "residual" the layer's (the heads' squared errors summed).
    """
    from models.attention import l1_scores, split_heads
    batches, exponents = list(batches), list(exponents)
    was_training = student.training
    teacher.eval()
    student.eval()
    targets = [teacher.forward_all(b["input_ids"], b["attention_mask"])[1] for b in batches]
    fits = []
    for layer, block in enumerate(student.encoder.blocks):
        attn = block.attn
        per_head = attn.gamma.dim() > 0  # InhibitorOptions.per_head
        heads = [attn.qkv(out.hidden_states[layer]) for out in targets]  # the scalars do not change them
        l1s = [l1_scores(q, k) for q, k, _ in heads]
        sums = {}  # (e, a) -> the sums <h, t>, <h, h>, <t, t> (`_best_fit`): numbers, or (H,) per head
        for e in exponents:
            for a in (list(alphas) if attn.alpha is not None else [0.0]):
                attn.set_scalars(2.0 ** e * math.sqrt(attn.head_dim), 1.0, a)
                ht = hh = tt = 0.0
                for b, out, qkv, l1 in zip(batches, targets, heads, l1s):
                    h, t = attn.mix(*qkv, b["attention_mask"], l1), out.contexts[layer]  # (B, n, D)
                    keep = b["attention_mask"][..., None].to(t.dtype)  # (B, n, 1)
                    if per_head:  # sums per head, (H,)
                        h, t, keep = split_heads(h, attn.heads), split_heads(t, attn.heads), keep[:, None]
                        ht = ht + (h * t * keep).sum((0, 2, 3)).double()
                        hh = hh + (h * h * keep).sum((0, 2, 3)).double()
                        tt = tt + (t * t * keep).sum((0, 2, 3)).double()
                    else:
                        ht += float((h * t * keep).sum())
                        hh += float((h * h * keep).sum())
                        tt += float((t * t * keep).sum())
                sums[(e, a)] = (ht, hh, tt)
        if per_head:
            best = [_best_fit({ea: tuple(float(x[head]) for x in s) for ea, s in sums.items()})
                    for head in range(attn.heads)]
        else:
            best = [_best_fit(sums)]
        if any(f is None for f in best):
            raise UserError(f"inhibitor calibration of layer {layer}: no gamma in 2**{min(exponents)}.."
                            f"2**{max(exponents)} gives a context correlated with the teacher's"
                            f"{' in every head' if per_head else ''}; train without calibration "
                            f"(--no-calibrate-inhibitor)")
        if per_head:  # the layer's residual: the heads' squared errors over the teacher contexts' norm
            tt = next(iter(sums.values()))[2]  # (H,): the same for every candidate
            fit = {key: [f[key] for f in best] for key in ("exponent", "alpha", "beta")}
            fit["residual"] = float(sum(f["residual"] * tt[head] for head, f in enumerate(best)) / tt.sum())
            attn.set_scalars([2.0 ** e * math.sqrt(attn.head_dim) for e in fit["exponent"]], fit["beta"],
                             fit["alpha"])
        else:
            fit = best[0]
            attn.set_scalars(2.0 ** fit["exponent"] * math.sqrt(attn.head_dim), fit["beta"], fit["alpha"])
        fits.append(fit)
    student.train(was_training)
    return fits
