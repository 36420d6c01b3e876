"""onnxruntime session-creation time of a MiniLM-size exported model (6 layers, 384 hidden), per variant.

Exports `random_quant_model("minilm", attention, bits=8)` for dot, symmetric and inhibitor attention
with the current export code and times `onnxruntime.InferenceSession` on it (CPU provider; once with
the default graph optimisations, once with them disabled), next to the model's function-body size
(nodes of all bodies, counting Loop bodies, and nodes after inlining).

    python bench/ort_session.py                      # time the current export
    python bench/ort_session.py --save DIR           # also keep the models (e.g. to time an old export)
    python bench/ort_session.py --before DIR         # also time DIR/<variant>.onnx, saved by an older export

Session creation is dominated by onnxruntime inlining and resolving the function bodies, so its
cost grows with (body nodes) x (calls); a body that unrolls an iteration multiplies it.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import onnx
import onnx.inliner
import onnxruntime as ort

from models import variants

VARIANTS = variants.names()  # every registered attention variant


def body_nodes(model: onnx.ModelProto) -> int:
    """Nodes of every function body, counting the nodes of their subgraphs (Loop/If bodies)."""
    def count(nodes) -> int:
        total = 0
        for node in nodes:
            total += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    total += count(attr.g.node)
                for g in attr.graphs:
                    total += count(g.node)
        return total
    return sum(count(fn.node) for fn in model.functions)


def session_seconds(data: bytes, optimize: bool) -> float:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    start = time.perf_counter()
    ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    return time.perf_counter() - start


def export(attention: str) -> onnx.ModelProto:
    from export.onnx_lower import to_onnx
    from quant.qat.lower import lower
    from quant.qat.model import random_quant_model

    return to_onnx(lower(random_quant_model("minilm", attention, 8, 0).eval()))


def report(label: str, model: onnx.ModelProto) -> None:
    data = model.SerializeToString()
    inlined = len(onnx.inliner.inline_local_functions(model).graph.node)
    t_opt = session_seconds(data, True)
    t_none = session_seconds(data, False)
    print(f"{label:<22} {len(model.graph.node):>6} {body_nodes(model):>7} {inlined:>8} {t_opt:>10.2f} {t_none:>10.2f}",
          flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", type=Path, help="write the exported models to DIR/<variant>.onnx")
    parser.add_argument("--before", type=Path, help="also time DIR/<variant>.onnx (from an older export)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args()
    print(f"onnxruntime {ort.__version__}, CPU provider, 1 intra-op thread; seconds per InferenceSession")
    print(f"{'model':<22} {'graph':>6} {'bodies':>7} {'inlined':>8} {'opt (s)':>10} {'no-opt (s)':>10}")
    for attention in args.variants:
        if args.before is not None:
            report(f"{attention} (before)", onnx.load(args.before / f"{attention}.onnx"))
        model = export(attention)
        if args.save is not None:
            args.save.mkdir(parents=True, exist_ok=True)
            onnx.save(model, args.save / f"{attention}.onnx")
        report(f"{attention} (now)" if args.before is not None else attention, model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
