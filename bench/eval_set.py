"""A synthetic MNLI-sized evaluation set through hwsim: one process vs all cores vs a local Dask cluster.

    PYTHONPATH=. python bench/eval_set.py                       # 9,815 samples, subsets as printed
    PYTHONPATH=. python bench/eval_set.py --limit 300 --max-len 64

The set is synthetic: 9,815 samples (MNLI validation-matched) of random token ids whose lengths
(premise + hypothesis in BERT WordPiece tokens, [CLS]/[SEP] included) follow a log-normal we assume
from MNLI's published statistics (premise about 22 words, hypothesis about 11): median 36 tokens
(mu = ln 36 = 3.58), sigma 0.42, so mean about 39 and 99th percentile about 95 tokens; not fitted
here, clipped to [5, --max-len]. The model is a randomly initialised integer DistilBERT-base
(6 layers, 768 hidden, 12 heads, 3072 FFN) with dot-product attention, 8-bit, exported once to
--model (the same as `hwsim export --init random --arch distilbert-base --attention dot --bits 8`).

A single-process pass over all 9,815 samples takes about 10 minutes on one core, so one process is
timed on a length-stratified subset (--single-limit), the Dask cluster on another (--dask-limit),
and all cores on the whole set; samples/s of such subsets are comparable with the whole set's, as
they keep its length distribution. Worker start-up and model loading count in the parallel runs;
the single process has its model loaded and warm. Ratios are against the single process.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MNLI_SAMPLES = 9815
LOG_MU, LOG_SIGMA = float(np.log(36.0)), 0.42
CLS, SEP, FIRST_WORD = 101, 102, 999  # BERT uncased vocabulary: special tokens, then words from 999


def synthetic_set(n: int, max_len: int, vocab: int, seed: int = 0) -> list[np.ndarray]:
    """`n` samples [CLS] a [SEP] b [SEP] with log-normal total lengths (see module docstring)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.rint(rng.lognormal(LOG_MU, LOG_SIGMA, n)), 5, max_len).astype(int)
    ids = []
    for length in lengths:
        row = rng.integers(FIRST_WORD, vocab, length, dtype=np.int64)
        row[0], row[-1], row[int(rng.integers(2, length - 1))] = CLS, SEP, SEP
        ids.append(row)
    return ids


def stratified(ids: list[np.ndarray], k: int) -> list[np.ndarray]:
    """`k` samples evenly spaced over the set sorted by length: the same length distribution."""
    if k >= len(ids):
        return ids
    order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
    return [ids[order[int(j)]] for j in np.linspace(0, len(ids) - 1, k).round()]


def ensure_model(path: Path) -> Path:
    if not path.is_file():
        from export.cli import export_model
        from quant.qat.model import random_quant_model
        print(f"exporting a random DistilBERT-base-dims dot-attention W8 model to {path}", flush=True)
        export_model(random_quant_model("distilbert-base", "dot", 8, 0), path)
    return path


def timed(label: str, ids: list[np.ndarray], fn) -> tuple[float, dict]:
    t0 = time.perf_counter()
    report = fn(ids)
    rate = len(ids) / (time.perf_counter() - t0)
    print(f"{label}: {len(ids)} samples (mean {np.mean([len(x) for x in ids]):.1f} tokens) "
          f"in {len(ids) / rate:.1f} s: {rate:.2f} samples/s", flush=True)
    return rate, report


def main(argv=None) -> int:
    from hwsim.app.dask_run import dask_client, simulate_dask
    from hwsim.sim.executor import execute
    from hwsim.sim.graph import load_plan
    from hwsim.app.parallel import RunSpec, default_jobs, simulate_local, simulate_pool

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--limit", type=int, default=MNLI_SAMPLES, help="samples in the synthetic set (default 9815)")
    p.add_argument("--max-len", type=int, default=128, help="truncation length in tokens (default 128)")
    p.add_argument("--single-limit", type=int, default=400, help="samples timed in one process (default 400)")
    p.add_argument("--dask-limit", type=int, default=1200, help="samples timed on the Dask cluster (default 1200)")
    p.add_argument("--dask-workers", type=int, default=2)
    p.add_argument("--jobs", type=int, default=default_jobs(), help="processes of the all-cores run")
    p.add_argument("--model", default=str(Path(tempfile.gettempdir()) / "hwsim-bench" / "distilbert-dot-w8.onnx"))
    args = p.parse_args(argv)

    model = ensure_model(Path(args.model))
    plan = load_plan(model)
    ids = synthetic_set(args.limit, args.max_len, int(plan.meta["vocab_size"]))
    spec = RunSpec(str(model))
    print(f"synthetic MNLI-like set: {len(ids)} samples, lengths {min(map(len, ids))}-{max(map(len, ids))} tokens, "
          f"mean {np.mean([len(x) for x in ids]):.1f}; model {model.name}; {default_jobs()} cores (shared machine)",
          flush=True)
    warm = ids[0][None, :]
    execute(plan, warm, np.ones_like(warm))  # Numba kernels loaded before the single-process clock starts

    single, _ = timed("single process (subset)", stratified(ids, args.single_limit),
                      lambda x: simulate_local(plan, spec, x, None))
    pool, _ = timed(f"all cores ({args.jobs} processes, whole set)", ids,
                    lambda x: simulate_pool(plan, spec, x, None, args.jobs))
    with tempfile.TemporaryDirectory() as shards:
        def on_dask(x):
            with dask_client(workers=args.dask_workers) as client:
                return simulate_dask(plan, spec, x, None, client, shards)
        dask, _ = timed(f"Dask LocalCluster ({args.dask_workers} workers, subset)",
                        stratified(ids, args.dask_limit), on_dask)
    print(f"ratios vs single process: all cores {pool / single:.2f}x, Dask {dask / single:.2f}x; "
          f"estimated single-process time for the whole set {len(ids) / single / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
