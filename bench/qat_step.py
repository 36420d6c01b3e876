"""QAT training step time against the float training step of the same model, measured in one run.

MiniLM dimensions (6 layers, hidden 384, 12 heads, FFN 1536), random weights, batch 32 x 64 tokens,
cross-entropy, backward, AdamW step. Prints both medians and the ratio QAT / float (target <= 2.5).

    python bench/qat_step.py [--attention dot|inhibitor|symmetric] [--bits 8] [--steps 5] [--threads 1]

On a shared machine pin the threads (`--threads 1` or OMP_NUM_THREADS=1): both sides then run alike.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from models.encoder import SequenceClassifier
from quant.qat.config import QuantConfig
from quant.qat.model import ARCHS, calibrate, quantize_model


def make_step(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor):
    """A closure running one training step and returning its duration in seconds."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()

    def step() -> float:
        start = time.perf_counter()
        loss = F.cross_entropy(model(ids, mask), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attention", default="dot")
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both sides (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = ARCHS["minilm"].replace(attention=args.attention, activation="relu")
    ids = torch.randint(1, cfg.vocab_size, (args.batch, args.seq))
    mask = torch.ones_like(ids)
    mask[args.batch // 2:, args.seq // 2:] = 0  # half the batch padded to half length
    labels = torch.randint(0, 2, (args.batch,))
    float_model = SequenceClassifier(cfg)
    qmodel = quantize_model(float_model, QuantConfig(weight_bits=args.bits, act_bits=args.bits))
    calibrate(qmodel, [(ids[:8], mask[:8])])
    steps = {"float": make_step(float_model, ids, mask, labels), "qat": make_step(qmodel, ids, mask, labels)}
    times: dict[str, list[float]] = {"float": [], "qat": []}
    for i in range(args.steps + 1):  # alternate, so that load on the machine hits both alike
        for name, step in steps.items():
            took = step()
            if i:  # the first step of each warms up
                times[name].append(took)
    t_float, t_qat = statistics.median(times["float"]), statistics.median(times["qat"])
    print(f"minilm {args.attention} batch {args.batch} x {args.seq}, {torch.get_num_threads()} threads")
    print(f"float step {t_float * 1e3:.0f} ms, QAT W{args.bits}A{args.bits} step {t_qat * 1e3:.0f} ms, "
          f"ratio QAT/float {t_qat / t_float:.2f} (target <= 2.5)")


if __name__ == "__main__":
    main()
