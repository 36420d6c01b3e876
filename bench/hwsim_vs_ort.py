"""hwsim (Numba kernels, counting on) against onnxruntime on the same integer ONNX graph.

Synthetic DistilBERT-base-sized encoders (6 layers, hidden 768, 12 heads, FFN 3072, vocab 30522,
512 positions) for 'dot' and 'inhibitor'; batch 1, seq 128; warm-up first, then the median of
several runs of each, all in this one process. Also: the cost of counting, the inhibitor kernel
over the dot-attention kernel on the same shapes, and peak memory at seq 512. The last line is
the ratio for the inhibitor model (the mechanism this project studies).

    python bench/hwsim_vs_ort.py [--runs 5] [--layers 6]
"""
from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np
import onnxruntime as ort

from export.onnx_lower import to_onnx
from hwsim.sim.executor import _counts, execute
from hwsim.sim.graph import load_plan
from hwsim.sim.kernels.inhibitor import inhibitor_attention
from hwsim.sim.kernels.softmax import dot_attention
from quant.intops.synth import SynthConfig, synth_program


def median_time(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for both: onnxruntime intra-op and hwsim's BLAS (default 1: on a shared, "
                             "loaded 2-core VM two spinning threads per process collapse to ~20x slower)")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=args.threads, user_api="blas")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    print(f"threads: {args.threads} (onnxruntime intra-op and hwsim BLAS; Numba kernels are serial)")
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30522, size=(1, args.seq))
    mask = np.ones_like(ids)
    ratios, attn = {}, {}
    for variant in ("dot", "inhibitor"):
        prog = synth_program(SynthConfig(vocab=30522, max_position=512, hidden=768, heads=12, ffn=3072,
                                         layers=args.layers, attention=variant))
        model = to_onnx(prog)
        plan = load_plan(model)
        sess = ort.InferenceSession(model.SerializeToString(), opts)
        feeds = {"input_ids": ids, "attention_mask": mask}
        assert np.array_equal(execute(plan, ids, mask).outputs["logits"], sess.run(None, feeds)[0])
        t_ort = median_time(lambda: sess.run(None, feeds), args.runs)
        t_sim = median_time(lambda: execute(plan, ids, mask, count=True), args.runs)
        t_nocount = median_time(lambda: execute(plan, ids, mask, count=False, track_widths=False), args.runs)
        plan.count_cache.clear()
        t0 = time.perf_counter()
        env_shapes = _shapes(plan, ids, mask)
        _counts(plan, env_shapes)
        t_cold = time.perf_counter() - t0
        ratios[variant] = t_sim / t_ort
        print(f"{variant:9s} seq {args.seq}: hwsim {t_sim * 1e3:8.1f} ms (counting on), onnxruntime {t_ort * 1e3:8.1f} ms, "
              f"hwsim/onnxruntime {ratios[variant]:.3f}")
        print(f"{variant:9s} counting + width tracking: {100 * max(t_sim - t_nocount, 0) / t_sim:.1f}% of run time "
              f"(counts cached per input shape; first count of a new shape {t_cold * 1e3:.1f} ms)")
        node = next(n for n in plan.nodes if n.op_type.endswith("Attention"))
        attn[variant] = node.attrs
        if variant == "inhibitor":
            long_ids = rng.integers(1000, 30522, size=(1, 512))
            execute(plan, long_ids, np.ones_like(long_ids))
            tracemalloc.start()
            execute(plan, long_ids, np.ones_like(long_ids))
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            params = sum(a.nbytes for a in plan.params.values())
            print(f"inhibitor seq 512: peak traced allocation during one run {peak / 2**20:.1f} MiB "
                  f"(params {params / 2**20:.1f} MiB held by the plan; ORT would hold n*n*d per head)")
        del sess, plan
    q, k, v = (rng.integers(-128, 128, size=(1, 12, args.seq, 64)).astype(np.int8) for _ in range(3))
    a, b = attn["inhibitor"], attn["dot"]
    t_inh = median_time(lambda: inhibitor_attention(q, k, v, mask, a["z_shift"], a["center"], a["alpha"], a["signed"],
                                                    a["out_shift"], a["bits"], 128), 20)
    t_dot = median_time(lambda: dot_attention(q, k, v, mask, b["q_ln2"], b["b_int"], b["c_int"], b["n_clip"],
                                              b["prob_bits"], b["out_shift"], b["bits"]), 20)
    print(f"attention kernel 12x{args.seq}x{args.seq}x64: inhibitor {t_inh * 1e3:.2f} ms, dot {t_dot * 1e3:.2f} ms, "
          f"inhibitor/dot {t_inh / t_dot:.2f}")
    print(f"dot model: hwsim/onnxruntime {ratios['dot']:.3f}; the last line is the inhibitor model")
    print(f"hwsim/onnxruntime: {ratios['inhibitor']:.3f}")


def _shapes(plan, ids, mask) -> dict:
    """Shapes of every tensor of one run (what counting sees)."""
    env = {}
    res_plan_outputs = plan.outputs
    plan.outputs = tuple(t for n in plan.nodes for t in n.outputs)
    try:
        env = execute(plan, ids, mask, count=False, track_widths=False).outputs
    finally:
        plan.outputs = res_plan_outputs
    shapes = {t: tuple(v.shape) for t, v in env.items()}
    shapes.update({t: tuple(v.shape) for t, v in plan.params.items()})
    shapes.update({"input_ids": ids.shape, "attention_mask": mask.shape})
    return shapes


if __name__ == "__main__":
    main()
