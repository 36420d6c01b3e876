"""Token positions processed per real token: random batches against length-grouped ones (`quant.train.sampler`).

Batches are trimmed to their longest example (`quant.train.runtime.take`), so a batch costs
`size * longest`. Prints, for the training split of a task tokenised like `hwsim train`, the length
statistics and the ratio processed / real of one epoch for `--group-window 0` (random batches, the
peer) and each window asked for, e.g.

    rt train: 10199 snippets, mean 26.9 tokens, median 26, p95 47 (max-length 64, batch 16)
    window 0 (random): 1.79x real tokens
    window 50: 1.02x real tokens (0.57 of random)

    python bench/sampler_padding.py [--task rt] [--teacher minilm] [--train-limit N] [--max-length 64]
        [--batch-size 16] [--windows 50 10] [--seed 0]
"""
from __future__ import annotations

import argparse

import torch


def main() -> None:
    from models.loading import load_tokenizer
    from models.teacher import resolve_teacher
    from quant.data.tasks import encode, load_split
    from quant.train.sampler import LengthGroupedSampler, padding_ratio
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="rt")
    ap.add_argument("--teacher", default="minilm", help="the tokenizer's model (a name or a run folder)")
    ap.add_argument("--train-limit", type=int, default=None)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--windows", type=int, nargs="+", default=[50])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = encode(load_split(args.task, "train", None, args.train_limit),
                  load_tokenizer(resolve_teacher(args.teacher)), args.max_length)
    lengths = data["attention_mask"].sum(1)
    q = torch.quantile(lengths.float(), torch.tensor([0.5, 0.95]))
    print(f"{args.task} train: {len(lengths)} snippets, mean {lengths.float().mean():.1f} tokens, median "
          f"{q[0]:.0f}, p95 {q[1]:.0f} (max-length {args.max_length}, batch {args.batch_size})")
    ratio = lambda w: padding_ratio(lengths, LengthGroupedSampler(  # noqa: E731
        lengths, args.batch_size, seed=args.seed, window=w).batches(0))
    peer = ratio(0)
    print(f"window 0 (random): {peer:.2f}x real tokens")
    for w in args.windows:
        print(f"window {w}: {ratio(w):.2f}x real tokens ({ratio(w) / peer:.2f} of random)")


if __name__ == "__main__":
    main()
