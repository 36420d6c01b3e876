"""The symmetric student's eigen-initialisation from a dot-product teacher (`SymmetricAttention.from_dot_state`).

Differential: the student's scores against the teacher's (exact when the teacher's bilinear form is
symmetric with rank <= d), and against the best rank-d approximation of its symmetric part computed
directly with a full numpy eigh."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.attention import SymmetricAttention, split_heads
from models.config import EncoderConfig
from models.encoder import SequenceClassifier
from quant.train.loop import student_from

CFG = EncoderConfig(vocab_size=40, hidden=16, layers=2, heads=2, ffn=24, max_position=16, activation="relu",
                    type_vocab_size=2, dropout=0.0, attention_dropout=0.0)
H, D = CFG.heads, CFG.hidden
d = D // H


def dot_teacher(seed: int, symmetric: bool) -> SequenceClassifier:
    """A dot model with N(0, 0.3) query/key weights and biases; with `symmetric`, each head's keys are
    its queries times a sign per dimension, so A_h = Wq~_h^T diag(signs) Wq~_h is symmetric, rank <= d."""
    gen = torch.Generator().manual_seed(seed)
    teacher = SequenceClassifier(CFG.replace(attention="dot")).eval()
    with torch.no_grad():
        for block in teacher.encoder.blocks:
            for lin in (block.attn.q_lin, block.attn.k_lin):
                lin.weight.copy_(0.3 * torch.randn(D, D, generator=gen))
                lin.bias.copy_(0.3 * torch.randn(D, generator=gen))
            if symmetric:
                signs = torch.tensor([1.0, -1.0, 1.0])[torch.arange(D) % 3]  # both signs in every head
                block.attn.k_lin.weight.copy_(signs[:, None] * block.attn.q_lin.weight)
                block.attn.k_lin.bias.copy_(signs * block.attn.q_lin.bias)
    return teacher


def teacher_scores(attn, x: torch.Tensor) -> torch.Tensor:
    q, k = split_heads(attn.q_lin(x), H), split_heads(attn.k_lin(x), H)  # (B, H, n, d)
    return q @ k.transpose(-2, -1) / math.sqrt(d)  # (B, H, n, n)


def student_scores(attn, x: torch.Tensor) -> torch.Tensor:
    u = split_heads(attn.qk_lin(x), H)  # (B, H, n, d)
    return (u * attn.c[:, None, :]) @ u.transpose(-2, -1) / math.sqrt(d)  # (B, H, n, n)


def best_symmetric_rank_d(attn) -> list[np.ndarray]:
    """Per head, the best rank-d approximation of (A'_h + A'_h^T) / 2 by a full (D+1) x (D+1) numpy eigh,
    A'_h = A_h with its last column (terms of the query alone) replaced by its last row."""
    out = []
    for h in range(H):
        rows = slice(h * d, (h + 1) * d)
        wq = np.hstack([attn.q_lin.weight[rows].double().numpy(), attn.q_lin.bias[rows].double().numpy()[:, None]])
        wk = np.hstack([attn.k_lin.weight[rows].double().numpy(), attn.k_lin.bias[rows].double().numpy()[:, None]])
        a = wq.T @ wk  # (D+1, D+1)
        a[:, -1] = a[-1, :]
        lam, vec = np.linalg.eigh((a + a.T) / 2)
        top = np.argsort(-np.abs(lam))[:d]
        out.append((vec[:, top] * lam[top]) @ vec[:, top].T)
    return out


def test_a_symmetric_rank_d_teacher_is_reproduced_exactly():
    teacher = dot_teacher(0, symmetric=True)
    student, _ = student_from(teacher, "symmetric")
    student.eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 7, D, generator=gen)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 4:] = 0
    with torch.no_grad():
        for t_block, s_block in zip(teacher.encoder.blocks, student.encoder.blocks):
            t, s = teacher_scores(t_block.attn, x), student_scores(s_block.attn, x)
            assert torch.allclose(t.softmax(-1), s.softmax(-1), atol=1e-5)
            assert torch.allclose(t_block.attn.context(x, mask), s_block.attn.context(x, mask), atol=1e-5)


def test_the_student_form_is_the_best_rank_d_symmetric_part():
    teacher = dot_teacher(2, symmetric=False)
    student, _ = student_from(teacher, "symmetric")
    x = torch.randn(2, 5, D, generator=torch.Generator().manual_seed(3))
    x1 = torch.cat([x, torch.ones(2, 5, 1)], -1).double()  # (B, n, D+1): homogeneous coordinates
    with torch.no_grad():
        for t_block, s_block in zip(teacher.encoder.blocks, student.encoder.blocks):
            attn = s_block.attn
            w = torch.cat([attn.qk_lin.weight, attn.qk_lin.bias[:, None]], 1).double().view(H, d, D + 1)
            ours = w.transpose(-2, -1) @ (attn.c.double()[:, :, None] * w)  # (H, D+1, D+1): W~^T diag(c) W~
            refs = best_symmetric_rank_d(t_block.attn)
            for h in range(H):
                assert np.allclose(ours[h].numpy(), refs[h], atol=1e-5 * np.abs(refs[h]).max())
            want = torch.stack([x1 @ torch.from_numpy(r) @ x1.transpose(-2, -1) for r in refs], 1) / math.sqrt(d)
            assert torch.allclose(student_scores(attn, x).double(), want, rtol=1e-4, atol=1e-4)
            # the teacher's own scores are not symmetric: the init is an approximation here
            assert not torch.allclose(teacher_scores(t_block.attn, x).double(), want, atol=1e-2)


@pytest.mark.parametrize("symmetric", [True, False])
def test_c_is_a_sign_and_both_signs_occur(symmetric):
    student, _ = student_from(dot_teacher(4, symmetric), "symmetric")
    for block in student.encoder.blocks:
        c = block.attn.c.detach()
        assert c.shape == (H, d) and set(c.unique().tolist()) == {-1.0, 1.0}


def test_the_whole_state_dict_loads_and_student_from_takes_it():
    teacher = dot_teacher(5, symmetric=False)
    state = SymmetricAttention.from_dot_state(teacher.state_dict(), heads=H)
    fresh = SequenceClassifier(CFG.replace(attention="symmetric"))
    assert set(state) == set(fresh.state_dict())  # k_lin dropped, q_lin -> qk_lin, c added
    fresh.load_state_dict(state, strict=True)
    student, _ = student_from(teacher, "symmetric")
    for name, value in student.state_dict().items():
        assert torch.equal(value, state[name]), name
    ours = student.encoder.blocks[0].attn
    theirs = teacher.encoder.blocks[0].attn
    assert torch.equal(ours.v_lin.weight, theirs.v_lin.weight) and torch.equal(ours.out_lin.bias, theirs.out_lin.bias)


def test_the_head_count_is_required():
    with pytest.raises(ValueError, match="heads=teacher.cfg.heads"):
        SymmetricAttention.from_dot_state(dot_teacher(6, symmetric=False).state_dict())
