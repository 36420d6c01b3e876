"""Which tau makes an inhibitor student's softmax(-Z/tau) closest to its teacher's attention probabilities.

Per layer of a float inhibitor student (`--student`, e.g. a study's float-inhibitor run) under teacher
forcing (layer l gets the teacher's hidden state l, as the layer-by-layer init does), eval mode, on the
first `--snippets` training snippets of `--task` (batches of `--batch`, `--max-length` tokens): the
score-distillation loss `score_kl(-Z/tau, QK^T/sqrt(d))` for tau = 2**-3 .. 2**3, and the spread of
each side's logits (standard deviation over the valid keys of a row, mean over rows and heads).
Printed: one row per layer, then the mean over layers.

    python bench/score_temperature.py --student RUN --teacher TEACHER [--task rt] [--snippets 64]
"""
from __future__ import annotations

import argparse

import torch

from models.loading import load_checkpoint, load_tokenizer
from quant.data.tasks import encode, load_split
from quant.train.distill import TeacherScores, score_kl

TAUS = tuple(2.0 ** e for e in range(-3, 4))


def row_spread(logits: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over valid rows and heads of the standard deviation of `logits` (B, H, n, n) over valid keys."""
    keep = mask[:, None, None, :].to(logits.dtype)
    count = keep.sum(-1)  # (B, 1, 1)
    mean = (logits * keep).sum(-1) / count
    std = (((logits - mean[..., None]) ** 2 * keep).sum(-1) / count).sqrt()  # (B, H, n)
    rows = mask[:, None, :].to(std.dtype).expand_as(std)
    return float((std * rows).sum() / rows.sum())


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--student", required=True)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--task", default="rt")
    ap.add_argument("--snippets", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=48)
    args = ap.parse_args()
    teacher, student = (load_checkpoint(p)[0].eval() for p in (args.teacher, args.student))
    data = encode(load_split(args.task, "train", limit=args.snippets), load_tokenizer(args.teacher), args.max_length)
    scores = TeacherScores(teacher, student.cfg.layers, student.cfg.heads)
    layers = student.cfg.layers
    kl = torch.zeros(layers, len(TAUS))
    spread = torch.zeros(layers, 2)
    batches = range(0, args.snippets, args.batch)
    for start in batches:
        ids = data["input_ids"][start:start + args.batch]
        mask = data["attention_mask"][start:start + args.batch]
        n = int(mask.sum(1).max())
        ids, mask = ids[:, :n], mask[:, :n]
        hidden = teacher.forward_all(ids, mask)[1].hidden_states
        for layer, (block, t) in enumerate(zip(student.encoder.blocks, scores(hidden))):
            z = block.attn.inhibition(hidden[layer], mask)
            kl[layer] += torch.stack([score_kl(-z / tau, t, mask) for tau in TAUS]) / len(batches)
            spread[layer] += torch.tensor([row_spread(-z, mask), row_spread(t, mask)]) / len(batches)
    print("layer | spread of -Z | spread of QK^T/sqrt(d) | " + " | ".join(f"KL tau={tau:g}" for tau in TAUS))
    for layer in range(layers):
        print(f"{layer} | {spread[layer, 0]:.3f} | {spread[layer, 1]:.3f} | "
              + " | ".join(f"{float(x):.4f}" for x in kl[layer]))
    mean = kl.mean(0)
    print(f"mean | {spread[:, 0].mean():.3f} | {spread[:, 1].mean():.3f} | " + " | ".join(f"{float(x):.4f}" for x in mean))
    print(f"best tau (mean over layers): {TAUS[int(mean.argmin())]:g}")


if __name__ == "__main__":
    main()
