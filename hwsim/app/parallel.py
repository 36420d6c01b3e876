"""Simulate many tokenized samples bit for bit: in this process, or split over worker processes.

Every sample runs alone at its own length (batch 1, no padding), so a sample's logits, counts and
widths do not depend on which process ran it or with which neighbours. Work is cut into shards of
samples of similar length (`plan_shards`); each shard yields a *partial*: a JSON-able dict of its
samples' lengths, predictions and integer logits (at `2**-meta['logits_exp']`), its per-node action counts and its per-tensor peak magnitudes.
`merge` sums the counts (integers), takes the maximum of the peaks and puts each prediction and logit row back
at its sample's index: the merged report is the same, byte for byte, whatever the split.
"""
from __future__ import annotations

import functools
import math
import os
import re
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from models.errors import UserError

MAX_POOL_SHARD = 32  # samples per shard of a local pool: small enough for a lively progress bar
MIN_POOL_SAMPLES = 16  # fewer run in this process: a worker's start (imports, model load) costs seconds


@dataclass(frozen=True)
class RunSpec:
    """What every worker needs to simulate a shard the same way: files by path, settings by value."""
    model: str
    hw: str | None = None          # hardware config JSON; None = packaged default
    overflow: str = "error"        # error | saturate | wrap
    check_ort: int = 0             # 0: no onnxruntime check; -1: every sample; N: samples 0..N-1


@dataclass(frozen=True, eq=False)
class Shard:
    key: int                       # position in `plan_shards` order; names the shard file
    indices: tuple[int, ...]       # sample indices in the whole set
    ids: tuple[np.ndarray, ...]    # token ids of each sample, (n_i,) int64


def default_jobs() -> int:
    """Cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def plan_shards(ids: list[np.ndarray], size: int) -> list[Shard]:
    """Samples sorted by (length, index), cut into shards of `size`: shards of similar cost, and the
    same shards for the same samples and size on every run (what resuming relies on)."""
    if size < 1:
        raise UserError(f"shard size {size} must be at least 1")
    order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
    return [Shard(k, tuple(order[s:s + size]), tuple(ids[i] for i in order[s:s + size]))
            for k, s in enumerate(range(0, len(order), size))]


def longest_first(shards: list[Shard]) -> list[Shard]:
    """Submission order: the costliest shards first, so no worker is left with a long one at the end."""
    return sorted(shards, key=lambda s: -sum(len(x) ** 2 + 64 * len(x) for x in s.ids))


def ort_session(model: str, threads: int = 0):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def simulate_shard(plan, spec: RunSpec, shard: Shard, sess=None, on_sample=None) -> dict:
    """Simulate a shard's samples one at a time; its partial (see module docstring)."""
    from hwsim.sim.executor import execute

    per_node: dict[str, Counter] = {}
    max_abs: dict[str, int] = {}
    seq_lens, preds, raw, checked = [], [], [], 0
    for i, row in zip(shard.indices, shard.ids):
        ids = np.asarray(row, dtype=np.int64)[None, :]
        mask = np.ones_like(ids)
        res = execute(plan, ids, mask, overflow=spec.overflow)
        logits = res.outputs["logits"]
        for node, counts in res.counts.items():
            per_node.setdefault(node, Counter()).update(counts)
        for tensor, value in res.max_abs.items():
            max_abs[tensor] = max(max_abs.get(tensor, 0), int(value))
        if sess is not None and (spec.check_ort < 0 or i < spec.check_ort):
            ort_logits = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            if not np.array_equal(ort_logits, logits):
                raise UserError(f"sample {i} ({ids.shape[1]} tokens): hwsim logits {logits.tolist()} differ from "
                                f"onnxruntime {ort_logits.tolist()}; this is a simulator or exporter bug, please report it")
            checked += 1
        seq_lens.append(int(ids.shape[1]))
        preds.append(int(np.argmax(logits[0])) if logits.shape[-1] > 1 else None)
        raw.append([int(v) for v in logits[0]])
        if on_sample is not None:
            on_sample()
    return {"key": shard.key, "indices": list(shard.indices), "seq_lens": seq_lens, "predictions": preds,
            "logits": raw, "per_node": {k: dict(v) for k, v in per_node.items()}, "max_abs": max_abs, "ort_checked": checked}


def _layer(name: str) -> str:
    """Report group of a node: `layer{i}` for encoder layer i, else `embedding` or `head`."""
    match = re.match(r"l(\d+)[./]", name)
    if match:
        return f"layer{match.group(1)}"
    return "embedding" if name.startswith("emb") else "head"


def _needed_bits(max_abs: int, signed: bool) -> int:
    return max_abs.bit_length() + (1 if signed else 0) if max_abs else 1


def merge(plan, model_path, partials: list[dict], samples: int, labels) -> dict:
    """The run report of `samples` samples from the partials of shards that cover each exactly once."""
    per_node: dict[str, Counter] = {node.name: Counter() for node in plan.nodes}
    max_abs: dict[str, int] = {}
    seq_lens, preds, logits = [None] * samples, [None] * samples, [None] * samples
    for part in partials:
        for node, counts in part["per_node"].items():
            per_node[node].update(counts)
        for tensor, value in part["max_abs"].items():
            max_abs[tensor] = max(max_abs.get(tensor, 0), value)
        for i, n, p, z in zip(part["indices"], part["seq_lens"], part["predictions"], part["logits"]):
            seq_lens[i], preds[i], logits[i] = n, p, z
    missing = [i for i, n in enumerate(seq_lens) if n is None]
    if missing:
        raise UserError(f"{len(missing)} samples (first: {missing[:5]}) were not simulated; rerun to complete them")
    accuracy = None
    if labels is not None and preds[0] is not None:
        accuracy = float(np.mean([p == int(y) for p, y in zip(preds, labels)]))
    widths = {}
    for tensor, value in sorted(max_abs.items()):
        info = plan.formats.get(tensor)
        declared, signed = (info.bits, info.signed) if info is not None else (32, True)  # node/accumulator
        widths[tensor] = {"declared": declared, "max_abs": value, "needed": _needed_bits(value, signed)}
    return {
        "model": str(model_path), "meta": plan.meta, "samples": samples, "seq_lens": seq_lens,
        "accuracy": accuracy, "predictions": preds, "logits": logits,
        "counts": {"per_node": {k: dict(sorted(v.items())) for k, v in per_node.items()},
                   "node_op": {n.name: n.op_type for n in plan.nodes},
                   "node_layer": {n.name: _layer(n.name) for n in plan.nodes}},
        "widths": widths, "ort_checked": sum(p["ort_checked"] for p in partials), "ort_mismatches": 0,
    }


@functools.lru_cache(maxsize=2)
def worker_plan(model: str, hw: str | None):
    """The plan of a worker process, loaded once per (model, hw) and reused for all its shards. A
    worker is one core's share: its BLAS (Linear's exact float routes) runs one thread, since a pool of
    one process per core with a multi-threaded BLAS each oversubscribes the cores (measured here: 2
    processes x 2 BLAS threads ran 3x slower than one process)."""
    from threadpoolctl import threadpool_limits

    from hwsim.sim.graph import load_plan
    threadpool_limits(1)
    from hwsim.sim.hwconfig import load_hw
    return load_plan(model, load_hw(hw))


@functools.lru_cache(maxsize=2)
def _worker_session(model: str):
    return ort_session(model, threads=1)


def shard_in_worker(spec: RunSpec, shard: Shard) -> dict:
    """A shard's partial, in a worker process (plan and onnxruntime session cached per process)."""
    sess = _worker_session(spec.model) if spec.check_ort else None
    return simulate_shard(worker_plan(spec.model, spec.hw), spec, shard, sess)


def simulate_local(plan, spec: RunSpec, ids: list[np.ndarray], labels, progress: bool = True) -> dict:
    """All samples in this process, in index order; the run report."""
    from tqdm import tqdm

    sess = ort_session(spec.model) if spec.check_ort else None
    with tqdm(total=len(ids), desc="hwsim run", unit="sample", disable=not progress) as bar:
        part = simulate_shard(plan, spec, Shard(0, tuple(range(len(ids))), tuple(ids)), sess, bar.update)
    return merge(plan, spec.model, [part], len(ids), labels)


def simulate_pool(plan, spec: RunSpec, ids: list[np.ndarray], labels, jobs: int, progress: bool = True) -> dict:
    """All samples over `jobs` worker processes (1, or under MIN_POOL_SAMPLES samples: this process);
    the same report as `simulate_local`."""
    from tqdm import tqdm

    size = max(1, min(MAX_POOL_SHARD, math.ceil(len(ids) / (4 * max(jobs, 1)))))
    shards = plan_shards(ids, size)
    jobs = min(jobs, len(shards))
    if jobs <= 1 or len(ids) < MIN_POOL_SAMPLES:
        return simulate_local(plan, spec, ids, labels, progress)
    partials = []
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"))
    try:
        with tqdm(total=len(ids), desc=f"hwsim run ({jobs} processes)", unit="sample", disable=not progress) as bar:
            pending = {pool.submit(shard_in_worker, spec, s): len(s.indices) for s in longest_first(shards)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    partials.append(fut.result())  # a worker's error is raised here, the rest cancelled
                    bar.update(pending.pop(fut))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return merge(plan, spec.model, sorted(partials, key=lambda p: p["key"]), len(ids), labels)
