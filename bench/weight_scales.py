"""Per-tensor against per-output-channel power-of-two weight scales: the weights' quantization error.

For every Linear weight of a checkpoint (the encoder's q/k/v/out and FFN weights, the pooler and the
classifier; not the embedding tables), the relative error |W - Q(W)| / |W| (Frobenius) of the
quantizer QAT starts from (`quant.qat.quantizers.fixed_point_weight`: narrow signed range, power-of-two
scale `2**-ceil(log2(max|w| / 2**(bits-1)))`, round half up) with one scale per tensor (what the
Linear op has) and with one per output channel (what `per_channel=True` would need: a shift per output
column), at 4, 6 and 8 bits. The error of the weights alone, before any QAT step: an indicator of where
per-channel scales could matter, not an accuracy.

    python bench/weight_scales.py [TEACHER: minilm or a folder] [--worst 5]
"""
from __future__ import annotations

import argparse

import torch

from models.loading import load_pretrained
from models.teacher import resolve_teacher


def fixed_point(w: torch.Tensor, bits: int, per_channel: bool) -> torch.Tensor:
    """`w` on its power-of-two grid (per tensor, or per output row of w [out, in]), narrow range, round half up."""
    top = (1 << (bits - 1)) - 1
    peak = w.abs().amax(dim=1, keepdim=True) if per_channel else w.abs().amax()
    scale = 2.0 ** -torch.ceil(torch.log2(peak.clamp(min=1e-10) / 2 ** (bits - 1)))
    return torch.clamp(torch.floor(w * scale + 0.5), -top, top) / scale


def linear_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """name -> float64 weight [out, in] of every 2-D weight but the embedding tables."""
    return {name: p.detach().double() for name, p in model.named_parameters()
            if name.endswith(".weight") and p.dim() == 2 and "embeddings" not in name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher", nargs="?", default="minilm")
    parser.add_argument("--worst", type=int, default=5, help="list the weights with the largest per-tensor error")
    args = parser.parse_args()
    model = load_pretrained(resolve_teacher(args.teacher), "dot", num_labels=2)
    model = model[0] if isinstance(model, tuple) else model
    weights = linear_weights(model)
    for bits in (4, 6, 8):
        err = {mode: [float((w - fixed_point(w, bits, mode)).norm() / w.norm()) for w in weights.values()]
               for mode in (False, True)}
        tensor, channel = err[False], err[True]
        print(f"{bits} bits, {len(weights)} weights: relative error per tensor mean {sum(tensor) / len(tensor):.3f} "
              f"(max {max(tensor):.3f}), per output channel mean {sum(channel) / len(channel):.3f} "
              f"(max {max(channel):.3f}); ratio of the means {sum(tensor) / sum(channel):.2f}")
    worst = sorted(((float((w - fixed_point(w, 4, False)).norm() / w.norm()), name, w) for name, w in weights.items()),
                   key=lambda r: r[0], reverse=True)[: args.worst]
    for e, name, w in worst:
        print(f"4 bits, {name}: per tensor {e:.3f}, per channel "
              f"{float((w - fixed_point(w, 4, True)).norm() / w.norm()):.3f}; max|w| {float(w.abs().max()):.3f}, "
              f"mean|w| {float(w.abs().mean()):.4f}")


if __name__ == "__main__":
    main()
