"""Peak memory of hwsim on a DistilBERT-base-size integer model (6 layers, 768 hidden, 12 heads,
FFN 3072) at sequence 128 and 512, for inhibitor and dot attention.

Each (attention, length) runs in a fresh subprocess: load the plan, run one sample, and report the
tracemalloc peak of the run (Python + numpy allocations made by execute) and ru_maxrss (whole process,
including imports, Numba's compiled code and the weights) with its growth during the run. Printed beside them: the activation memory the
shapes require, with the n*n per-head score matrices, and for contrast the n*n*d per head that a
broadcast L1 score computation would materialise. Growth 128 -> 512 is 4x for n-linear tensors and
16x for n*n ones; hwsim should grow no faster than the required activations.

    python bench/hwsim_memory.py [--lengths 128 512] [--attention inhibitor dot]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIMS = dict(vocab=30522, max_position=512, hidden=768, heads=12, ffn=3072, layers=6, num_labels=2, bits=8)
MIB = 2.0 ** 20


def required_bytes(n: int) -> dict[str, float]:
    """Activation bytes the shapes require (batch 1): the widest live tensors of one layer."""
    d, h, f = DIMS["hidden"], DIMS["heads"], DIMS["ffn"]
    per_head = d // h
    return {
        "hidden int32 (n*D)": 4 * n * d,
        "ffn acc int64 (n*F)": 8 * n * f,
        "scores int32 (H*n*n)": 4 * h * n * n,
        "L1 broadcast int64 (H*n*n*d)": 8 * h * n * n * per_head,
    }


def child(model: str, n: int) -> None:
    from hwsim.sim.executor import execute
    from hwsim.sim.graph import load_plan
    plan = load_plan(model)
    ids = np.random.default_rng(0).integers(0, DIMS["vocab"], (1, n))
    execute(plan, ids[:, :8])  # compile the kernels outside the measurement
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    tracemalloc.start()
    t0 = time.perf_counter()
    execute(plan, ids)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"traced": peak, "maxrss": rss, "rss_growth": rss - before, "seconds": seconds}))


def build(attention: str, folder: Path) -> Path:
    from export import save_model, to_onnx
    from quant.intops.synth import SynthConfig, synth_program
    path = folder / f"{attention}.onnx"
    save_model(to_onnx(synth_program(SynthConfig(attention=attention, **DIMS))), path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--attention", nargs="+", default=["inhibitor", "dot"])
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    print(f"model: {DIMS}")
    with tempfile.TemporaryDirectory() as tmp:
        for attention in args.attention:
            model = build(attention, Path(tmp))
            rows = {}
            for n in args.lengths:
                out = subprocess.run([sys.executable, __file__, "--child", str(model), str(n)],
                                     capture_output=True, text=True, check=True)
                rows[n] = json.loads(out.stdout.strip().splitlines()[-1])
                need = required_bytes(n)
                print(f"{attention:9} n={n:4}: traced peak {rows[n]['traced'] / MIB:8.1f} MiB, "
                      f"maxrss {rows[n]['maxrss'] / MIB:7.1f} MiB (+{rows[n]['rss_growth'] / MIB:.1f} during the run), "
                      f"{rows[n]['seconds']:.2f} s; required: "
                      + ", ".join(f"{k} {v / MIB:.1f} MiB" for k, v in need.items()))
            lo, hi = min(args.lengths), max(args.lengths)
            need_lo, need_hi = required_bytes(lo), required_bytes(hi)
            print(f"{attention:9} growth {lo}->{hi}: traced x{rows[hi]['traced'] / rows[lo]['traced']:.2f}; "
                  + ", ".join(f"{k} x{need_hi[k] / need_lo[k]:.0f}" for k in need_lo))


if __name__ == "__main__":
    main()
