"""The float attention variants behind one signature; each is the `float_module` of its
`models.variants` entry, which a config names by `EncoderConfig.attention`.

Every variant is an `nn.Module` built from an `EncoderConfig` with
`forward(x: (B, n, D), mask: (B, n) 1=token 0=pad) -> (B, n, D)` (after the output projection
`out_lin`). `context(x, mask)` returns the merged-head mixture *before* `out_lin`; that is what the
encoder hands out as the per-layer "attention output" for distillation.

- `dot`: softmax(Q K^T / sqrt(d)) V (BERT / DistilBERT).
- `inhibitor`: Manhattan scores and ReLU inhibition (REFERENCE.md section 1).
- `symmetric`: queries and keys share one projection, scores scaled per dimension by c.

Besides `context`, a variant says how it is made from a dot-product model (a Hugging Face checkpoint
or a fine-tuned teacher): `dot_renames` (which of q_lin/k_lin/v_lin/out_lin it takes under which name,
or drops) and `from_dot_state`; and which of its parameters train at their own learning rate
(`scalar_parameters`). Its options are `cfg.attention_options`; its quantized form and the rest of it
are the other facets of its entry (docs/QUANT.md "Attention variants").
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from models import variants
from models.config import EncoderConfig


def attention_class(name: str) -> type["Attention"]:
    """The float attention module of the variant registered as `name`."""
    return variants.get(name).facet("float_module")


def make_attention(cfg: EncoderConfig) -> nn.Module:
    """The attention module named by `cfg.attention`."""
    return attention_class(cfg.attention)(cfg)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    B, n, D = x.shape
    return x.view(B, n, heads, D // heads).transpose(1, 2)  # (B, H, n, d)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    B, H, n, d = x.shape
    return x.transpose(1, 2).reshape(B, n, H * d)  # (B, n, D)


class Attention(nn.Module):
    """Shared plumbing: `forward` = `out_lin(context(x, mask))`; the hooks for building a variant from a
    dot-product model, whose defaults take it as it is."""

    # a dot-product model's attention sub-module -> this variant's name for it, None = dropped;
    # sub-modules not listed keep their name (parameters the variant lacks are then left out)
    dot_renames: ClassVar[dict[str, str | None]] = {}

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.heads, self.head_dim = cfg.heads, cfg.head_dim
        self.out_lin = nn.Linear(cfg.hidden, cfg.hidden)

    @classmethod
    def from_dot_name(cls, local: str) -> str | None:
        """This variant's name for `local` ('q_lin' or 'q_lin.weight', relative to the attention module)
        of a dot-product model, None if the variant drops it."""
        head, dot, rest = local.partition(".")
        if head not in cls.dot_renames:
            return local
        new = cls.dot_renames[head]
        return None if new is None else new + dot + rest

    @classmethod
    def from_dot_state(cls, state: dict[str, torch.Tensor], *, heads: int | None = None) -> dict[str, torch.Tensor]:
        """A dot-product classifier's state dict under this variant's names (`from_dot_name` on the part
        after '.attn.'; every other name as it is). `heads` (the teacher's head count) is for variants
        that recombine per-head weights; the base ignores it."""
        out = {}
        for name, value in state.items():
            block, sep, local = name.partition(".attn.")
            local = cls.from_dot_name(local) if sep else local
            if local is not None:
                out[block + sep + local] = value
        return out

    def scalar_parameters(self) -> list[nn.Parameter]:
        """The parameters that train at their own learning rate (`TrainConfig.scalar_lr`); none by default."""
        return []

    def context(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.out_lin(self.context(x, mask))


def softmax_mix(scores: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, drop: nn.Dropout) -> torch.Tensor:
    """softmax over keys of `scores` (B, H, n, n), padded keys set to the dtype minimum, times v."""
    keep = mask[:, None, None, :].bool()  # (B, 1, 1, n)
    scores = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
    return drop(scores.softmax(dim=-1)) @ v  # (B, H, n, d)


class DotAttention(Attention):
    """softmax(Q K^T / sqrt(d)) V per head."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        self.q_lin = nn.Linear(cfg.hidden, cfg.hidden)
        self.k_lin = nn.Linear(cfg.hidden, cfg.hidden)
        self.v_lin = nn.Linear(cfg.hidden, cfg.hidden)
        self.drop = nn.Dropout(cfg.attention_dropout)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Q K^T / sqrt(d) of `x` (B, n, D): (B, H, n, n), before masking; its softmax over valid keys is
        the attention probabilities (what score distillation teaches, `quant.train.distill.score_kl`)."""
        q = split_heads(self.q_lin(x), self.heads)  # (B, H, n, d)
        k = split_heads(self.k_lin(x), self.heads)
        return q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, n, n)

    def context(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.scores(x)  # (B, H, n, n)
        v = split_heads(self.v_lin(x), self.heads)  # (B, H, n, d)
        return merge_heads(softmax_mix(scores, v, mask, self.drop))  # (B, n, D)


# ---------------------------------------------------------------- inhibitor (REFERENCE.md section 1)

def inhibitor_scores(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor, gamma, alpha, center: bool,
                     v: torch.Tensor, l1: torch.Tensor) -> torch.Tensor:
    """Z from the Manhattan distances `l1` (B, H, n, n): scale, centre, shift, ReLU, mask.

    Shared by both inhibition routes so that they differ only in how H is summed.
    """
    d = q.shape[-1]
    keep = mask[:, None, None, :].to(l1.dtype)  # (B, 1, 1, n)
    z = gamma / math.sqrt(d) * l1
    if center:  # subtract the mean over valid keys of each query row
        z = z - (z * keep).sum(-1, keepdim=True) / keep.sum(-1, keepdim=True).clamp(min=1)
    if alpha is not None:
        z = z + alpha
    z = F.relu(z)
    full = v.detach().abs().amax(dim=(-2, -1), keepdim=True) + 1  # (B, H, 1, 1): inhibits everything
    return torch.where(keep.bool(), z, full)  # (B, H, n, n)


def inhibit_reference(q, k, v, mask, gamma=1.0, alpha=None, beta=1.0, center=False, signed=False):
    """Inhibitor attention computed literally: materialises the (n, n, d) differences.

    q, k, v: (B, H, n, d); mask: (B, n) with 1 = token, 0 = pad; alpha None disables the shift.
    Z_ij = ReLU((gamma/sqrt(d)) sum_k |q_ik - k_jk| [- mean_j valid] [+ alpha]), Z = max|V|+1 on
    padded keys; unsigned H_ik = sum_j ReLU(v_jk - Z_ij), signed H_ik = sum_j sign(v_jk) ReLU(|v_jk| - Z_ij).
    Returns beta * H: (B, H, n, d).
    """
    l1 = (q[..., :, None, :] - k[..., None, :, :]).abs().sum(-1)  # (B, H, n_q, n_k)
    z = inhibitor_scores(q, k, mask, gamma, alpha, center, v, l1)[..., None]  # (B, H, n_q, n_k, 1)
    vj = v[..., None, :, :]  # (B, H, 1, n_k, d)
    if signed:
        h = (vj.sign() * F.relu(vj.abs() - z)).sum(-2)  # (B, H, n_q, d)
    else:
        h = F.relu(vj - z).sum(-2)  # (B, H, n_q, d)
    return beta * h


def l1_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """sum_c |q_ic - k_jc|: (B, H, n_q, d), (B, H, n_k, d) -> (B, H, n_q, n_k) (the CPU kernel of
    `models.inhibitor_ops` on the CPU, `torch.cdist` elsewhere)."""
    if q.device.type == "cpu":
        from models.inhibitor_ops import l1_distance
        return l1_distance(q, k)
    return torch.cdist(q, k, p=1)


def inhibit_fast(q, k, v, mask, gamma=1.0, alpha=None, beta=1.0, center=False, signed=False, l1=None):
    """Same result as `inhibit_reference` without its (n, n, d) tensors.

    On the CPU: the Numba kernels of `models.inhibitor_ops` (scores and the mixing sum, each with its
    own backward; the mixing summed directly). Elsewhere, through ReLU(v - z) = (v - z + |v - z|) / 2:
    scores are `torch.cdist(q, k, p=1)`; the pairwise sum_j |Z_ij - V_jk| is an L1 distance between
    row i of Z and column k of V, so it is `torch.cdist(Z, V^T, p=1)` too.
    Unsigned: H = (sum_j V - sum_j Z + sum_j |Z - V|) / 2.
    Signed:   H = (sum_j V + sum_j |Z - V+| - sum_j |Z - V-|) / 2, V+ = ReLU(V), V- = ReLU(-V) (Z >= 0).
    The identity cancels large sums: in float32 the difference from `inhibit_reference` grows like
    eps * sum_j Z_ij (measured: < 2e-6 for n <= 12, d <= 16; up to 4e-5 for n = 32, d = 64, N(0,1) inputs).
    `l1`: `l1_scores(q, k)` when already computed (the calibration tries many gamma on one q, k).
    """
    l1 = l1_scores(q, k) if l1 is None else l1  # (B, H, n_q, n_k)
    if q.device.type == "cpu":
        from models.inhibitor_ops import inhibit_mix
        return beta * inhibit_mix(inhibitor_scores(q, k, mask, gamma, alpha, center, v, l1), v, signed)
    z = inhibitor_scores(q, k, mask, gamma, alpha, center, v, l1)
    v_sum = v.sum(-2, keepdim=True)  # (B, H, 1, d)
    if signed:
        pos = torch.cdist(z, F.relu(v).transpose(-2, -1), p=1)  # (B, H, n_q, d)
        neg = torch.cdist(z, F.relu(-v).transpose(-2, -1), p=1)  # (B, H, n_q, d)
        h = (v_sum + pos - neg) / 2
    else:
        dist = torch.cdist(z, v.transpose(-2, -1), p=1)  # (B, H, n_q, d)
        h = (v_sum - z.sum(-1, keepdim=True) + dist) / 2
    return beta * h


LOG_SCALARS = ("gamma", "beta")  # the scalars `InhibitorOptions.scalars = "log"` trains as logarithms


class InhibitorAttention(Attention):
    """Inhibitor attention with learnable scalars gamma (score scale), alpha (shift), beta (output).

    Its options are `models.variants.InhibitorOptions`: alpha exists only when `alpha_init > 0`;
    centring and signed inhibition as they say. gamma, beta and alpha are its scalars.

    `scalars="log"` trains gamma and beta as their natural logarithms, parameters `log_gamma` and
    `log_beta` (alpha stays linear: it may be negative): gamma = exp(log_gamma), beta = exp(log_beta)
    stay positive (the quantized model stores their log2, `quant.qat.attention`), and an optimizer step
    of at most `scalar_lr` (Adam) scales them by at most exp(scalar_lr), where a linear step moves beta
    (about 0.02-0.05 after calibration) by 2-5 % at 1e-3. `attn.gamma` and `attn.beta` read the linear
    values either way; `set_scalars` writes them.

    `per_head`: each scalar is a (H, 1, 1) tensor, one value per head, broadcast over that head's
    scores (gamma, alpha) and context (beta); else a 0-d tensor shared by the layer's heads.
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        opts = cfg.attention_options
        self.q_lin = nn.Linear(cfg.hidden, cfg.hidden)
        self.k_lin = nn.Linear(cfg.hidden, cfg.hidden)
        self.v_lin = nn.Linear(cfg.hidden, cfg.hidden)
        self.log_scalars = opts.scalars == "log"
        shape = (cfg.heads, 1, 1) if opts.per_head else ()
        for name, init in zip(LOG_SCALARS, (opts.gamma_init, opts.beta_init)):
            if self.log_scalars:
                setattr(self, "log_" + name, nn.Parameter(torch.full(shape, math.log(init))))
            else:
                setattr(self, name, nn.Parameter(torch.full(shape, float(init))))
        self.alpha = nn.Parameter(torch.full(shape, float(opts.alpha_init))) if opts.alpha_init > 0 else None
        self.center, self.signed = opts.center, opts.signed

    def __getattr__(self, name: str):
        """gamma and beta of the log parametrisation: exp of their parameters (differentiable)."""
        if name in LOG_SCALARS and "log_" + name in self._parameters:
            return self._parameters["log_" + name].exp()
        return super().__getattr__(name)

    @torch.no_grad()
    def set_scalars(self, gamma, beta, alpha=None) -> None:
        """Set gamma, beta (positive under the log parametrisation) and alpha (when the module has one)
        to these linear values: each a number (every head) or, with `per_head`, one value per head."""
        def put(param: nn.Parameter, value, log: bool = False) -> None:
            if isinstance(value, (int, float)):
                param.fill_(math.log(value) if log else value)
            else:  # one per head
                values = [math.log(float(x)) if log else float(x) for x in value]
                param.copy_(torch.tensor(values, dtype=param.dtype).reshape(param.shape))

        for name, value in zip(LOG_SCALARS, (gamma, beta)):
            if self.log_scalars:
                put(getattr(self, "log_" + name), value, log=True)
            else:
                put(getattr(self, name), value)
        if alpha is not None and self.alpha is not None:
            put(self.alpha, alpha)

    def scalar_parameters(self) -> list[nn.Parameter]:
        """gamma, beta (or their logarithms) and alpha: at the projections' learning rate they move by
        < 0.02 in an epoch."""
        own = [getattr(self, ("log_" if self.log_scalars else "") + name) for name in LOG_SCALARS]
        return [p for p in (*own, self.alpha) if p is not None]

    def inhibition(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Z of `x` (B, n, D): (B, H, n, n), `inhibitor_scores` (gamma/sqrt(d) times the L1 distances,
        centred, shifted by alpha, ReLU; padded keys max|V| + 1). A key is the more attended the smaller
        its Z: score distillation compares softmax(-Z / tau) with the teacher's probabilities."""
        q, k, v = self.qkv(x)
        return inhibitor_scores(q, k, mask, self.gamma, self.alpha, self.center, v, l1_scores(q, k))

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values of `x`, each (B, H, n, d)."""
        return tuple(split_heads(lin(x), self.heads) for lin in (self.q_lin, self.k_lin, self.v_lin))

    def mix(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, l1=None) -> torch.Tensor:
        """The context (B, n, D) from `qkv`'s heads with this module's scalars (`l1`: see `inhibit_fast`)."""
        h = inhibit_fast(q, k, v, mask, self.gamma, self.alpha, self.beta, self.center, self.signed, l1)
        return merge_heads(h)  # (B, n, D)

    def context(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.mix(*self.qkv(x), mask)


# ---------------------------------------------------------------- symmetric (Courtois et al. 2024)

def symmetric_part_factors(left: torch.Tensor, right: torch.Tensor, rank: int
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """W (..., rank, m) and c (..., rank) in {-1, +1} with W^T diag(c) W the best rank-`rank`
    approximation (Frobenius and spectral norm) of S = (L^T R + R^T L) / 2, L = `left`, R = `right`
    (..., r, m): the `rank` eigenpairs (lambda_k, e_k) of S of largest |lambda|, row k of W =
    sqrt(|lambda_k|) e_k^T, c_k = sign(lambda_k) (+1 for 0).

    S lives in the span Q of the rows of L and R (dim <= 2r), so the eigenproblem is solved there:
    Q from a QR of [L; R]^T, then eigh of Q^T S Q = sym((L Q)^T (R Q)), 2r x 2r instead of m x m.
    Rows are ordered by decreasing |lambda|; each e_k's sign is whatever eigh returns.
    """
    basis, _ = torch.linalg.qr(torch.cat([left, right], -2).transpose(-2, -1))  # (..., m, q), q <= 2r
    small = (left @ basis).transpose(-2, -1) @ (right @ basis)  # (..., q, q) = Q^T L^T R Q
    lam, vec = torch.linalg.eigh((small + small.transpose(-2, -1)) / 2)  # (..., q), (..., q, q)
    top = lam.abs().topk(rank, dim=-1).indices  # (..., rank)
    lam = lam.gather(-1, top)
    vec = (basis @ vec).gather(-1, top[..., None, :].expand(*basis.shape[:-1], rank))  # (..., m, rank)
    factors = lam.abs().sqrt()[..., :, None] * vec.transpose(-2, -1)  # (..., rank, m)
    return factors, torch.where(lam >= 0, 1.0, -1.0).to(lam.dtype)


def symmetric_from_dot(wq: torch.Tensor, bq: torch.Tensor, wk: torch.Tensor, bk: torch.Tensor, heads: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`qk_lin.weight` (D, D), `qk_lin.bias` (D) and `c` (H, d) of a symmetric head set that best
    approximates the dot-product heads with query/key Linear parameters wq, bq, wk, bk.

    Per head h, in homogeneous coordinates x~ = [x, 1] (D + 1), the teacher's score is
        t_ij = x~_i^T A_h x~_j / sqrt(d),  A_h = Wq~_h^T Wk~_h,  Wq~_h = [Wq_h | bq_h]  (d x (D + 1)),
    the student's s_ij = x~_i^T W~_h^T diag(c_h) W~_h x~_j / sqrt(d),  W~_h = [W_h | b_h].
    Softmax over j ignores terms that depend on i alone, i.e. A_h's last column (x_i^T Wq_h^T bk_h +
    bq_h . bk_h), so it is free: it is set to A_h's last row (bq_h^T Wk~_h), which makes the query-bias
    term bq_h . k_j exact after symmetrising. W~_h^T diag(c_h) W~_h is then the best rank-d
    approximation of S_h = (A'_h + A'_h^T) / 2 (`symmetric_part_factors`), A'_h = A_h + u e^T with
    u = Wk~_h^T bq_h - Wq~_h^T bk_h and e the last unit vector. So s = t up to row constants when A_h
    is symmetric with rank <= d; otherwise s differs by the antisymmetric part of A'_h and the
    truncated eigenvalues of S_h (rank <= 2d + 2). On the demo teacher the per-layer context residual
    is 0.08-0.60 (0.10-0.79 with A_h's own symmetric part; 0.39-4.19 for the query projection with
    c = 1; `bench/symmetric_init.py`). Computed in float64, returned in wq's dtype.
    """
    D, d = wq.shape[1], wq.shape[0] // heads
    left = torch.cat([wq, bq[:, None]], 1).double().view(heads, d, D + 1)  # (H, d, D+1): Wq~_h
    right = torch.cat([wk, bk[:, None]], 1).double().view(heads, d, D + 1)  # (H, d, D+1): Wk~_h
    bq, bk = left[..., D], right[..., D]  # (H, d)
    u = right.transpose(-2, -1) @ bq[..., None] - left.transpose(-2, -1) @ bk[..., None]  # (H, D+1, 1)
    e = torch.zeros(heads, 1, D + 1, dtype=left.dtype)
    e[..., D] = 1.0
    # L'^T R' = A_h + u e^T: A_h with its last column replaced by its last row
    factors, c = symmetric_part_factors(torch.cat([left, u.transpose(-2, -1)], -2), torch.cat([right, e], -2), d)
    factors = factors.reshape(heads * d, D + 1).to(wq.dtype)  # (D, D+1): [W | b], heads stacked
    return factors[:, :D].contiguous(), factors[:, D].contiguous(), c.to(wq.dtype)


class SymmetricAttention(Attention):
    """Symmetric dot-product attention (Courtois et al. 2024), in the form implemented here:

    per head, with the shared projection u = x W + b (`qk_lin`, one Linear for queries and keys)
    and a learned per-dimension coefficient c (parameter `c`, shape (H, d), init 1):
        A_ij = sum_k c_k u_ik u_jk / sqrt(d)  = (u diag(c) u^T)_ij / sqrt(d)
    then softmax over valid keys (padded keys at the dtype minimum), times V, then `out_lin`.
    A is symmetric in (i, j) before masking.

    From a dot-product model's state dict (`from_dot_state`, hence `quant.train.loop.student_from`),
    `qk_lin` and c are the eigen-initialisation `symmetric_from_dot` of its queries and keys (the best
    rank-d symmetric approximation of each head's bilinear score form); v_lin, out_lin and the rest are
    taken as they are. `dot_renames` alone (the name map `models.loading.load_pretrained` uses on a
    Hugging Face folder) still takes `qk_lin` from the QUERY projection, drops the keys and leaves c = 1.
    """

    dot_renames = {"q_lin": "qk_lin", "k_lin": None}

    def __init__(self, cfg: EncoderConfig):
        super().__init__(cfg)
        self.qk_lin = nn.Linear(cfg.hidden, cfg.hidden)
        self.v_lin = nn.Linear(cfg.hidden, cfg.hidden)
        self.c = nn.Parameter(torch.ones(cfg.heads, cfg.head_dim))  # (H, d)
        self.drop = nn.Dropout(cfg.attention_dropout)

    def context(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        u = split_heads(self.qk_lin(x), self.heads)  # (B, H, n, d)
        v = split_heads(self.v_lin(x), self.heads)
        scores = (u * self.c[:, None, :]) @ u.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, n, n)
        return merge_heads(softmax_mix(scores, v, mask, self.drop))  # (B, n, D)

    @classmethod
    def from_dot_state(cls, state: dict[str, torch.Tensor], *, heads: int | None = None) -> dict[str, torch.Tensor]:
        """The dot-product state dict renamed (`dot_renames`), then every block's `qk_lin` and `c`
        replaced by `symmetric_from_dot` of its q_lin/k_lin; needs the teacher's head count `heads`."""
        if heads is None:
            raise ValueError("SymmetricAttention.from_dot_state needs the teacher's head count: pass "
                             "heads=teacher.cfg.heads")
        out = super().from_dot_state(state)
        for name in state:
            if not name.endswith(".attn.q_lin.weight"):
                continue
            p = name[:-len("q_lin.weight")]  # '...blocks.i.attn.'
            weight, bias, c = symmetric_from_dot(state[p + "q_lin.weight"], state[p + "q_lin.bias"],
                                                 state[p + "k_lin.weight"], state[p + "k_lin.bias"], heads)
            out[p + "qk_lin.weight"], out[p + "qk_lin.bias"], out[p + "c"] = weight, bias, c
        return out

