"""`hwsim run MODEL.onnx`: simulate samples bit for bit, one at a time at their own length, and
write a report of accuracy, per-node action counts (summed over samples) and tensor widths.

    hwsim run model.onnx --task rt --split test --limit 200 --check-ort --report run.json
    hwsim run model.onnx --text "a gripping, funny film" --report one.json
"""
from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from models.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="integer-only ONNX model written by `hwsim export`")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--task", help="task whose labelled split to run (e.g. rt)")
    src.add_argument("--text", action="append", help="a text to classify (repeatable)")
    parser.add_argument("--split", default="test", help="split of --task (default: test)")
    parser.add_argument("--limit", type=int, default=None, help="first N samples only")
    parser.add_argument("--data-dir", default=None, help="local data folder of the task")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer folder or teacher name (default: the model's hwsim.meta 'tokenizer', else minilm)")
    parser.add_argument("--check-ort", nargs="?", type=int, const=-1, default=0, metavar="N",
                        help="also run onnxruntime and require equal logits: on every sample, or on the first N")
    parser.add_argument("--hw", default=None, help="hardware config JSON for counting (default: packaged)")
    parser.add_argument("--overflow", choices=("error", "saturate", "wrap"), default="error",
                        help="what a value outside its declared width does (default: error)")
    parser.add_argument("--report", required=True, help="output JSON report")


def _layer(name: str) -> str:
    """Report group of a node: `layer{i}` for encoder layer i, else `embedding` or `head`."""
    match = re.match(r"l(\d+)[./]", name)
    if match:
        return f"layer{match.group(1)}"
    return "embedding" if name.startswith("emb") else "head"


def _needed_bits(max_abs: int, signed: bool) -> int:
    return max_abs.bit_length() + (1 if signed else 0) if max_abs else 1


def _tokenizer(args, meta: dict):
    from models.loading import load_tokenizer
    from models.teacher import resolve_teacher
    return load_tokenizer(resolve_teacher(args.tokenizer or meta.get("tokenizer") or "minilm"))


def simulate_texts(plan, model_path, texts, labels, tok, check_ort: int = 0, overflow: str = "error",
                   progress: bool = True, max_length: int | None = None) -> dict:
    """Simulate `texts` one at a time at their own length (batch 1, no padding); returns the run
    report as a dict. `check_ort`: 0 = no onnxruntime check, -1 = every sample, N = the first N.
    Texts are truncated to `max_length` tokens (default: the model's position table)."""
    import numpy as np
    from tqdm import tqdm

    from hwsim.executor import execute

    max_len = max_length or int(plan.meta.get("max_position", 512))
    sess = None
    if check_ort:
        import onnxruntime as ort
        sess = ort.InferenceSession(str(model_path))
    per_node: dict[str, Counter] = {node.name: Counter() for node in plan.nodes}
    max_abs: dict[str, int] = {}
    seq_lens, preds, checked = [], [], 0
    for i, text in enumerate(tqdm(texts, desc="hwsim run", unit="sample", disable=not progress)):
        parts = tuple(text) if isinstance(text, (tuple, list)) else (text,)  # sentence pairs: (a, b)
        ids = np.asarray(tok(*parts, truncation=True, max_length=max_len)["input_ids"], dtype=np.int64)[None, :]
        mask = np.ones_like(ids)
        res = execute(plan, ids, mask, overflow=overflow)
        logits = res.outputs["logits"]
        for node, counts in res.counts.items():
            per_node[node].update(counts)
        for tensor, value in res.max_abs.items():
            max_abs[tensor] = max(max_abs.get(tensor, 0), value)
        if sess is not None and (check_ort < 0 or checked < check_ort):
            ort_logits = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            if not np.array_equal(ort_logits, logits):
                raise UserError(f"sample {i} ({ids.shape[1]} tokens): hwsim logits {logits.tolist()} differ from "
                                f"onnxruntime {ort_logits.tolist()}; this is a simulator or exporter bug, please report it")
            checked += 1
        seq_lens.append(int(ids.shape[1]))
        preds.append(int(np.argmax(logits[0])) if logits.shape[-1] > 1 else None)

    accuracy = None
    if labels is not None and preds[0] is not None:
        accuracy = float(np.mean([p == int(y) for p, y in zip(preds, labels)]))
    widths = {}
    for tensor, value in sorted(max_abs.items()):
        info = plan.formats.get(tensor)
        declared, signed = (info.bits, info.signed) if info is not None else (32, True)  # node/accumulator
        widths[tensor] = {"declared": declared, "max_abs": value, "needed": _needed_bits(value, signed)}
    return {
        "model": str(model_path), "meta": plan.meta, "samples": len(texts), "seq_lens": seq_lens,
        "accuracy": accuracy, "predictions": preds,
        "counts": {"per_node": {k: dict(sorted(v.items())) for k, v in per_node.items()},
                   "node_op": {n.name: n.op_type for n in plan.nodes},
                   "node_layer": {n.name: _layer(n.name) for n in plan.nodes}},
        "widths": widths, "ort_checked": checked, "ort_mismatches": 0,
    }


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from hwsim.graph import load_plan
    from hwsim.hwconfig import load_hw
    from models.files import atomic_path

    if not Path(args.model).is_file():
        raise UserError(f"model {args.model} not found; pass the .onnx file written by `hwsim export`")
    plan = load_plan(args.model, load_hw(args.hw))
    if args.task:
        from quant.data.tasks import load_split
        split = load_split(args.task, args.split, data_dir=args.data_dir, limit=args.limit)
        texts, labels = list(split.texts), list(split.labels)
    else:
        texts, labels = list(args.text), None
    if not texts:
        raise UserError("no samples to run; check --task/--split/--limit")
    tok = _tokenizer(args, plan.meta)
    report = simulate_texts(plan, args.model, texts, labels, tok, args.check_ort, args.overflow)
    with atomic_path(args.report) as tmp:
        tmp.write_text(json.dumps(report, indent=1), encoding="utf-8")
    widths, accuracy = report["widths"], report["accuracy"]
    acc = "n/a" if accuracy is None else f"{100 * accuracy:.2f}%"
    tight = sum(w["needed"] < w["declared"] for w in widths.values())
    print(f"hwsim run: {len(texts)} samples, mean length {np.mean(report['seq_lens']):.1f} tokens, accuracy {acc}, "
          f"onnxruntime checked {report['ort_checked']} (0 mismatches); {tight}/{len(widths)} tensors use fewer bits "
          f"than declared; report {args.report}")
    return 0
