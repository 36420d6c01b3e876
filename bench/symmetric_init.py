"""How well a symmetric-attention student starts from a fine-tuned dot-product teacher, per layer.

Relative context residual |s - t|^2 / |t|^2 over valid tokens (as `quant.train.distill.calibrate_inhibitor`
measures it): layer l of the student gets the teacher's hidden state l (teacher forcing), eval mode,
`--batches` batches of `--batch` training snippets of `--task` at `--max-length` tokens. Columns:
- query: the former init, qk_lin = the teacher's query projection, c = 1 (the names `dot_renames` gives);
- eigen: `SymmetricAttention.from_dot_state` (`symmetric_from_dot`: best rank-d approximation of
  sym(A'_h), A_h = Wq~_h^T Wk~_h with its last column, which only shifts each softmax row, set to its
  last row, so that the query-bias term bq_h^T Wk~_h x~_j is exact after symmetrising);
- eigen-plain: the same without that column change (A_h's own symmetric part), for comparison;
- uniform: every token takes the mean of the teacher's values over valid tokens.
The last column is eigen / query.

    python bench/symmetric_init.py TEACHER_DIR [--task rt] [--batches 4] [--batch 32] [--max-length 48]
"""
from __future__ import annotations

import argparse

import torch

from models.attention import Attention, SymmetricAttention, split_heads, symmetric_part_factors
from models.encoder import SequenceClassifier
from models.loading import load_checkpoint, load_tokenizer
from quant.data.tasks import encode, load_split
from quant.train.loop import student_from


def query_student(teacher: SequenceClassifier) -> SequenceClassifier:
    """The former init: only the renames (qk_lin = q_lin, k_lin dropped), c left at 1."""
    student = SequenceClassifier(teacher.cfg.replace(attention="symmetric"))
    state = super(SymmetricAttention, SymmetricAttention).from_dot_state(teacher.state_dict())
    student.load_state_dict({k: v for k, v in state.items() if k in student.state_dict()}, strict=False)
    return student.eval()


def plain_student(teacher: SequenceClassifier) -> SequenceClassifier:
    """eigen without the free column: the best rank-d approximation of A_h's own symmetric part."""
    student, _ = student_from(teacher, "symmetric")
    H, D = teacher.cfg.heads, teacher.cfg.hidden
    d = D // H
    for t_block, s_block in zip(teacher.encoder.blocks, student.encoder.blocks):
        q, k = t_block.attn.q_lin, t_block.attn.k_lin
        wq = torch.cat([q.weight, q.bias[:, None]], 1).double().view(H, d, D + 1)  # (H, d, D+1)
        wk = torch.cat([k.weight, k.bias[:, None]], 1).double().view(H, d, D + 1)
        factors, c = symmetric_part_factors(wq, wk, d)
        factors = factors.reshape(D, D + 1).float()  # (D, D+1): [W | b]
        s_block.attn.qk_lin.weight.data.copy_(factors[:, :D])
        s_block.attn.qk_lin.bias.data.copy_(factors[:, D])
        s_block.attn.c.data.copy_(c.float())
    return student.eval()


def uniform_context(attn: Attention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of the values over valid tokens, the same for every token."""
    v = split_heads(attn.v_lin(x), attn.heads)  # (B, H, n, d)
    keep = mask[:, None, :, None].to(v.dtype)  # (B, 1, n, 1)
    mean = (v * keep).sum(2, keepdim=True) / keep.sum(2, keepdim=True)  # (B, H, 1, d)
    return mean.expand_as(v).transpose(1, 2).reshape(x.shape)  # (B, n, D)


@torch.no_grad()
def residuals(teacher: SequenceClassifier, contexts: dict, batches: list[dict]) -> dict[str, list[float]]:
    """Per column name, per layer: sum |s - t|^2 / sum |t|^2 over the valid tokens of all batches."""
    outs = [teacher.forward_all(b["input_ids"], b["attention_mask"])[1] for b in batches]
    table = {}
    for name, context in contexts.items():
        table[name] = []
        for layer in range(teacher.cfg.layers):
            err = ref = 0.0
            for b, out in zip(batches, outs):
                keep = b["attention_mask"][..., None].float()  # (B, n, 1)
                t = out.contexts[layer]
                s = context(layer, out.hidden_states[layer], b["attention_mask"])
                err += float(((s - t) ** 2 * keep).sum())
                ref += float((t * t * keep).sum())
            table[name].append(err / ref)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher", help="a fine-tuned dot-product checkpoint folder (hwsim train --float)")
    parser.add_argument("--task", default="rt")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=48)
    args = parser.parse_args()
    teacher, _ = load_checkpoint(args.teacher)
    teacher.eval()
    split = load_split(args.task, "train", args.data_dir, limit=args.batches * args.batch)
    data = encode(split, load_tokenizer(args.teacher), args.max_length)
    batches = [{k: data[k][i:i + args.batch] for k in ("input_ids", "attention_mask")}
               for i in range(0, args.batches * args.batch, args.batch)]
    students = {"query": query_student(teacher), "eigen": student_from(teacher, "symmetric")[0].eval(),
                "eigen-plain": plain_student(teacher)}
    contexts = {name: (lambda l, x, m, s=s: s.encoder.blocks[l].attn.context(x, m)) for name, s in students.items()}
    contexts["uniform"] = lambda l, x, m: uniform_context(teacher.encoder.blocks[l].attn, x, m)
    table = residuals(teacher, contexts, batches)
    print(f"{args.task} train, {args.batches} x {args.batch} snippets, max_length {args.max_length}: "
          f"|s - t|^2 / |t|^2 of the attention context, teacher-forced")
    print("layer " + "".join(f"{name:>12}" for name in table) + "  eigen/query")
    for layer in range(teacher.cfg.layers):
        row = "".join(f"{table[name][layer]:12.4f}" for name in table)
        print(f"{layer:5d} {row}  {table['eigen'][layer] / table['query'][layer]:11.3f}")


if __name__ == "__main__":
    main()
