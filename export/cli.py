"""`hwsim export`: a trained quantized run (or a randomly initialised one) -> integer-only ONNX.

    hwsim export RUN_DIR --out model.onnx [--format onnx|qonnx]
    hwsim export --init random --arch distilbert-base|minilm|CONFIG.json --attention NAME
                 [--bits N | --widths NAME] --out model.onnx

Both paths go through `export.pipeline.export_quant_model` (lower, to ONNX, validate, atomic save);
nothing is written when a step fails.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from export.pipeline import export_quant_model, load_run, run_max_length, run_task
from models import variants
from models.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", nargs="?", help="folder of a quantized `hwsim train` run")
    parser.add_argument("--out", required=True, help="output ONNX file")
    parser.add_argument("--init", choices=["random"], help="export a randomly initialised quantized model")
    parser.add_argument("--arch", default="minilm",
                        help="with --init random: distilbert-base, minilm or an EncoderConfig JSON file")
    parser.add_argument("--attention", default="inhibitor",
                        help="with --init random: the attention variant (models.variants: "
                             f"{', '.join(variants.names())}), with its default options")
    parser.add_argument("--bits", type=int, default=8, help="with --init random: weight/activation bits (WNAN, 4..16)")
    parser.add_argument("--widths", help="with --init random: a named width setting instead of --bits "
                                         "(quant.qat.widths, e.g. w4a4, w8a8-att4)")
    parser.add_argument("--seed", type=int, default=0, help="with --init random: seed of the weights")
    parser.add_argument("--format", choices=["onnx", "qonnx"], default="onnx",
                        help="qonnx additionally writes the Brevitas QONNX export next to --out")


def _quant_model(args: argparse.Namespace):
    """(QuantClassifier, tokenizer folder or None, task or None, max_length or None) named by the arguments."""
    if args.init == "random":
        if args.run_dir:
            raise UserError("give either RUN_DIR or --init random, not both")
        from quant.qat.model import random_quant_model
        from quant.qat.widths import uniform, width_setting
        if args.widths and args.bits != 8:
            raise UserError(f"give --widths {args.widths} or --bits {args.bits}, not both")
        setting = width_setting(args.widths) if args.widths else uniform(args.bits)
        return (random_quant_model(_arch(args.arch), args.attention, seed=args.seed, qcfg=setting.quant_config()),
                None, None, None)
    if not args.run_dir:
        raise UserError("no model: give a RUN_DIR from `hwsim train`, or --init random --arch ...")
    return load_run(args.run_dir), Path(args.run_dir), run_task(args.run_dir), run_max_length(args.run_dir)


def _arch(arch: str):
    path = Path(arch)
    if path.suffix == ".json":
        import json

        from models.config import EncoderConfig
        if not path.is_file():
            raise UserError(f"architecture file {path} not found")
        try:
            return EncoderConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError, KeyError) as err:
            raise UserError(f"{path} is not an EncoderConfig JSON ({err})") from err
    return arch


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    qmodel, tokenizer, task, max_length = _quant_model(args)
    out = Path(args.out)
    model = export_quant_model(qmodel, out, tokenizer=tokenizer, task=task, max_length=max_length)
    if args.format == "qonnx":
        from export.qonnx import export_qonnx_model
        qpath = out.with_name(out.stem + ".qonnx.onnx")
        export_qonnx_model(qmodel, qpath)
        print(f"wrote {qpath} (Brevitas QONNX)")
    print(f"wrote {out}: {len(model.graph.node)} nodes, {len(model.functions)} functions, "
          f"{out.stat().st_size / 2**20:.1f} MiB, {time.perf_counter() - t0:.1f} s")
    return 0

