"""Per-tensor against per-output-channel power-of-two weight scales: the weights' quantization error.

For every Linear of a checkpoint quantized as QAT starts from it (`quant.qat.model.quantize_model`, the
encoder's q/k/v/out and FFN weights, the pooler and the classifier; not the embedding tables), the
relative error |W - Q(W)| / |W| (Frobenius) of its weight quantizer: `QuantConfig(per_channel=False)`
(one power-of-two scale per Linear, `FixedPointWeightPerTensor`) against `per_channel=True` (one per
output channel, floored at 2**-15 of the layer's largest, `FixedPointWeightPerChannel`; the classifier
keeps one scale), at 4, 6 and 8 bits. Also counted: the channels whose scale sits on that floor. The
error of the weights alone, before any QAT step: an indicator of where per-channel scales matter,
not an accuracy.

With `--task rt --limit N` (a run folder of `hwsim train --float`, which holds its tokenizer), also the
accuracy on the first N validation snippets of the student quantized at W4A8 and W4A4, per tensor and
per channel, calibrated as `hwsim train` does (`--calib-batches` batches of 16 training snippets) and
evaluated before any QAT step: where QAT starts from, not where it ends.

    python bench/weight_scales.py [TEACHER: minilm, a Hugging Face folder or a run folder] [--worst 5]
                                  [--task rt --limit 384 --max-length 48 --calib-batches 4]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from models.loading import load_checkpoint, load_pretrained
from models.teacher import resolve_teacher
from quant.qat.config import QuantConfig
from quant.qat.model import quantize_model
from quant.qat.modules import QLinear


def float_model(name: str) -> torch.nn.Module:
    """The float model of a teacher name or folder (Hugging Face, or a run folder of `hwsim train`)."""
    folder = resolve_teacher(name)
    if "encoder_config" in json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")):
        return load_checkpoint(folder)[0]
    return load_pretrained(folder, "dot", num_labels=2)


@torch.no_grad()
def weight_errors(model: torch.nn.Module, bits: int, per_channel: bool) -> dict[str, tuple[float, int]]:
    """Linear name -> (relative Frobenius error of its quantized weight, channels on the scale floor)."""
    qmodel = quantize_model(model, QuantConfig(weight_bits=bits, per_channel=per_channel)).double()
    out = {}
    for name, lin in qmodel.named_modules():
        if isinstance(lin, QLinear):
            w, qw = lin.weight, lin.quant_weight()
            scale = qw.scale.reshape(-1)
            out[name] = (float((w - qw.value).norm() / w.norm()),
                         int((scale == scale.max() * 2.0 ** -15).sum()) if scale.numel() > 1 else 0)
    return out


def calibrated_accuracy(model: torch.nn.Module, folder: str, args) -> dict[str, float]:
    """Width setting -> validation accuracy after calibration alone (module docstring)."""
    from models.loading import load_tokenizer
    from quant.data.tasks import encode, get_task, load_split
    from quant.qat.model import calibrate
    from quant.qat.widths import width_setting
    from quant.train.runtime import evaluate
    tok, spec = load_tokenizer(resolve_teacher(folder)), get_task(args.task)
    train = encode(load_split(args.task, "train", None, 16 * args.calib_batches), tok, args.max_length)
    val = encode(load_split(args.task, "validation", None, args.limit), tok, args.max_length)
    batches = [{k: train[k][i:i + 16] for k in ("input_ids", "attention_mask")}
               for i in range(0, 16 * args.calib_batches, 16)]
    out = {}
    for name in ("w4a8", "w4a8-pc", "w4a4", "w4a4-pc"):
        qmodel = calibrate(quantize_model(model, width_setting(name).quant_config()), batches)
        out[name] = evaluate(qmodel, spec, val, 64, torch.device("cpu"))["accuracy"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teacher", nargs="?", default="minilm")
    parser.add_argument("--worst", type=int, default=5, help="list the weights with the largest per-tensor error")
    parser.add_argument("--task", default=None, help="also the calibrated accuracy on this task's validation split")
    parser.add_argument("--limit", type=int, default=384, help="with --task: first N validation snippets")
    parser.add_argument("--max-length", type=int, default=48, help="with --task: truncation (the demo's)")
    parser.add_argument("--calib-batches", type=int, default=4, help="with --task: calibration batches of 16")
    args = parser.parse_args()
    model = float_model(args.teacher).eval()
    if args.task:
        for name, acc in calibrated_accuracy(model, args.teacher, args).items():
            print(f"{name}: calibrated, before any QAT step: {100 * acc:.2f} % of {args.limit} {args.task} "
                  f"validation snippets")
    model = model.double()
    errors = {}
    for bits in (4, 6, 8):
        tensor, channel = errors[bits] = weight_errors(model, bits, False), weight_errors(model, bits, True)
        t, c = [e for e, _ in tensor.values()], [e for e, _ in channel.values()]
        floored = sum(n for _, n in channel.values())
        print(f"{bits} bits, {len(t)} Linears: relative error per tensor mean {sum(t) / len(t):.3f} (max {max(t):.3f}), "
              f"per output channel mean {sum(c) / len(c):.3f} (max {max(c):.3f}); ratio of the means "
              f"{sum(t) / sum(c):.2f}; {floored} channels on the 2**-15 floor")
    tensor, channel = errors[4]
    weights = dict(model.named_parameters())
    for name in sorted(tensor, key=lambda k: tensor[k][0], reverse=True)[: args.worst]:
        w = weights[f"{name}.weight"].detach()
        print(f"4 bits, {name}: per tensor {tensor[name][0]:.3f}, per channel {channel[name][0]:.3f}; "
              f"max|w| {float(w.abs().max()):.3f}, mean|w| {float(w.abs().mean()):.4f}")


if __name__ == "__main__":
    main()
