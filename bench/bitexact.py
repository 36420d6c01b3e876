"""Acceptance check: onnxruntime, hwsim and the integer reference agree bit for bit on trained models.

For each integer ONNX model (written by `hwsim export`):

1. every RT test snippet (tokenised and truncated like `hwsim run`: to the model's position table,
   or --max-len if smaller) through
   - onnxruntime, on right-padded batches (attention_mask 0 on padding) of up to --batch snippets
     (snippets sorted by length so batches pad little; fewer rows per onnxruntime call where its
     inhibitor body, which materialises (B, H, n, n, d) int64, would exceed --ort-budget),
   - the integer reference: `quant.intops.reference.run_program` on the IntProgram lifted back from the
     file (`export.onnx_lift.from_onnx`), on the same padded batches,
   - hwsim on the same padded batches, and hwsim one snippet at a time at its own length (no
     padding, as `hwsim run` does);
2. --random K random token sequences (random ids over the whole vocabulary) of lengths spread over
   1..max (1, 2, max-1 and max always among them), in batches of 2-4 padded to the longest plus up
   to 3 extra columns, with random ids on the padding, through the same four runs.

Every sample's logits must be equal in all four runs (hwsim unpadded is the witness the other three
are compared with: 3 comparisons per sample). Prints one line per model, e.g.

    inhibitor-w8.onnx: rt test 1159/1159 equal (ort==hwsim==intref), random 24/24 equal (lengths 1..512, padded)

and exits 1 at the first mismatch (or overflow) with the sample and the differing logits; 2 on a
usage error (missing model, no tokenizer).

    python bench/bitexact.py /tmp/demo_tiny/models/{dot,inhibitor,symmetric}-w8.onnx [--limit 50] [--random 6]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EXTRA_PAD_MAX = 3  # random part: extra all-padding columns beyond the longest sequence of a batch


class Failure(Exception):
    """A mismatch or an overflow: the message names the sample and the logits of every executor."""


@dataclass
class Tally:
    samples: int = 0
    equal: int = 0
    comparisons: int = 0
    batches: int = 0
    ort_calls: int = 0
    lengths: list[int] = field(default_factory=list)


@dataclass
class Model:
    path: Path
    plan: object
    prog: object
    sess: object
    meta: dict
    max_len: int
    row_cost: int  # elements onnxruntime's attention body materialises per batch row at max_len


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="integer ONNX model(s) written by `hwsim export`")
    parser.add_argument("--limit", type=int, default=None, help="first N RT test snippets only (default: all)")
    parser.add_argument("--random", type=int, default=24, metavar="K", help="random sequences per model (default 24)")
    parser.add_argument("--max-len", type=int, default=512,
                        help="cap on tokens per sequence (default 512; the model's position table caps it too)")
    parser.add_argument("--batch", type=int, default=16, help="RT snippets per padded batch (default 16)")
    parser.add_argument("--ort-budget", type=float, default=1.0, metavar="GIB",
                        help="largest int64 (B,H,n,n,d) tensor (inhibitor) or (B,H,n,n) (dot) one onnxruntime call "
                             "may materialise, in GiB (default 1.0: a 512-token MiniLM inhibitor row is 0.75)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random sequences (default 0)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for onnxruntime, torch and BLAS (default 1: shared 2-core machines)")
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer folder or teacher name (default: the model's hwsim.meta 'tokenizer', else minilm)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.max_len < 1 or args.random < 0 or (args.limit is not None and args.limit < 0):
        parser.error("--batch and --max-len must be >= 1, --random and --limit >= 0")
    return args


def load_model(path: Path, args) -> Model:
    import onnx
    import onnxruntime as ort

    from export.onnx_lift import from_onnx
    from hwsim.sim.graph import load_plan
    from models.errors import UserError

    if not path.is_file():
        raise UserError(f"model {path} not found")
    plan = load_plan(path)
    prog = from_onnx(onnx.load(str(path)))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    meta = dict(plan.meta)
    max_len = min(args.max_len, int(meta.get("max_position", 512)))
    heads, hidden = int(meta.get("heads", 1)), int(meta.get("hidden", 1))
    # onnxruntime's InhibitorAttention function materialises (n, n, d) per head; DotAttention (n, n)
    l1_pairs = any(node.op_type == "InhibitorAttention" for node in plan.nodes)
    per_head = max_len * max_len * (hidden // heads if l1_pairs else 1)
    return Model(path, plan, prog, sess, meta, max_len, heads * per_head)


def tokenizer_for(model: Model, args):
    from models.loading import load_tokenizer
    from models.teacher import resolve_teacher
    return load_tokenizer(resolve_teacher(args.tokenizer or model.meta.get("tokenizer") or "minilm"))


def ort_rows(model: Model, n: int, args) -> int:
    """Rows per onnxruntime call at padded length n, within --ort-budget."""
    cost = model.row_cost * (n / model.max_len) ** 2 * 8  # bytes per row
    return max(1, int(args.ort_budget * 2**30 // max(cost, 1)))


def run_batch(model: Model, ids: np.ndarray, mask: np.ndarray, lengths: list[int], labels: list[str],
              args, tally: Tally) -> None:
    """Four runs of one padded batch; raises Failure at the first sample whose logits differ."""
    import torch

    from hwsim.sim.executor import execute
    from quant.intops.reference import run_program

    def guarded(what, fn):
        try:
            return fn()
        except (OverflowError, ValueError, RuntimeError, KeyError) as err:
            raise Failure(f"{what} failed on batch [{', '.join(labels)}] of shape {ids.shape}: "
                          f"{type(err).__name__}: {err}") from None
        except Exception as err:  # noqa: BLE001 - hwsim SimError and friends: report with the batch
            raise Failure(f"{what} failed on batch [{', '.join(labels)}] of shape {ids.shape}: "
                          f"{type(err).__name__}: {err}") from None

    rows = ort_rows(model, ids.shape[1], args)
    parts = []
    for start in range(0, len(ids), rows):
        sl = slice(start, start + rows)
        parts.append(guarded("onnxruntime", lambda: model.sess.run(
            ["logits"], {"input_ids": ids[sl], "attention_mask": mask[sl]})[0]))
        tally.ort_calls += 1
    ort_logits = np.concatenate(parts)
    with torch.no_grad():
        ref_logits = guarded("intref", lambda: run_program(model.prog, torch.from_numpy(ids),
                                                           torch.from_numpy(mask))["logits"].numpy())
    padded = guarded("hwsim (padded batch)", lambda: execute(model.plan, ids, mask, count=False,
                                                            track_widths=False).outputs["logits"])
    tally.batches += 1
    for r, (n, label) in enumerate(zip(lengths, labels)):
        one = guarded(f"hwsim ({label})", lambda: execute(model.plan, ids[r:r + 1, :n], mask[r:r + 1, :n],
                                                         count=False, track_widths=False).outputs["logits"])[0]
        runs = {"hwsim (own length)": one, "hwsim (padded batch)": padded[r],
                "onnxruntime (padded batch)": ort_logits[r], "intref (padded batch)": ref_logits[r]}
        tally.samples += 1
        tally.lengths.append(n)
        for name in ("onnxruntime (padded batch)", "intref (padded batch)", "hwsim (padded batch)"):
            tally.comparisons += 1
            if not np.array_equal(np.asarray(runs[name], np.int64), np.asarray(one, np.int64)):
                lines = "\n".join(f"  {k:28s} {np.asarray(v).tolist()}" for k, v in runs.items())
                raise Failure(f"MISMATCH: {model.path.name}: {label}, {n} tokens, row {r} of a batch padded to "
                              f"{ids.shape[1]}: {name} differs from hwsim at the sample's own length\n"
                              f"  input_ids: {ids[r, :n].tolist()}\n{lines}")
        tally.equal += 1


def rt_part(model: Model, texts: list, args, bar) -> Tally:
    tok = tokenizer_for(model, args)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    encoded = []
    for text in texts:
        parts = tuple(text) if isinstance(text, (tuple, list)) else (text,)  # as hwsim run does
        encoded.append(np.asarray(tok(*parts, truncation=True, max_length=model.max_len)["input_ids"], np.int64))
    order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), i))
    tally = Tally()
    for start in range(0, len(order), args.batch):
        idx = order[start:start + args.batch]
        lengths = [len(encoded[i]) for i in idx]
        width = max(lengths)
        ids = np.full((len(idx), width), pad, np.int64)
        mask = np.zeros((len(idx), width), np.int64)
        for r, i in enumerate(idx):
            ids[r, :lengths[r]] = encoded[i]
            mask[r, :lengths[r]] = 1
        labels = [f"rt test snippet {i} ({texts[i]!r:.80})" for i in idx]
        run_batch(model, ids, mask, lengths, labels, args, tally)
        bar.update(len(idx))
    return tally


def random_lengths(k: int, max_len: int, rng: np.random.Generator) -> list[int]:
    """k lengths in 1..max_len: 1, 2, max_len-1, max_len first (as k allows), the rest log-uniform."""
    fixed = [n for n in dict.fromkeys((1, 2, max_len - 1, max_len)) if 1 <= n <= max_len][:k]
    rest = np.exp(rng.uniform(0, math.log(max_len), k - len(fixed))).round().astype(int).clip(1, max_len)
    lengths = fixed + [int(n) for n in rest]
    rng.shuffle(lengths)
    return lengths


def random_part(model: Model, args, bar) -> Tally:
    rng = np.random.default_rng(args.seed)
    vocab = int(model.meta["vocab_size"])
    lengths = random_lengths(args.random, model.max_len, rng)
    tally = Tally()
    start, b = 0, 0
    while start < len(lengths):
        size = int(rng.integers(2, 5))
        lens = lengths[start:start + size]
        width = min(model.max_len, max(lens) + int(rng.integers(0, EXTRA_PAD_MAX + 1)))
        ids = rng.integers(0, vocab, (len(lens), width)).astype(np.int64)  # random ids on the padding too
        mask = np.zeros((len(lens), width), np.int64)
        for r, n in enumerate(lens):
            mask[r, :n] = 1
        labels = [f"random sequence {start + r} (seed {args.seed}, batch {b})" for r in range(len(lens))]
        run_batch(model, ids, mask, lens, labels, args, tally)
        bar.update(len(lens))
        start += len(lens)
        b += 1
    return tally


def check_model(path: Path, texts: list, args) -> str:
    from tqdm import tqdm

    t0 = time.perf_counter()
    model = load_model(path, args)
    load_s = time.perf_counter() - t0
    total = len(texts) + args.random
    with tqdm(total=total, desc=path.name, unit="sample", disable=args.no_progress, file=sys.stderr) as bar:
        t1 = time.perf_counter()
        rt = rt_part(model, texts, args, bar)
        rt_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        rnd = random_part(model, args, bar)
        rnd_s = time.perf_counter() - t2
    span = f"lengths {min(rnd.lengths)}..{max(rnd.lengths)}" if rnd.lengths else "none"
    rt_span = f"{min(rt.lengths)}..{max(rt.lengths)} tokens" if rt.lengths else "no snippets"
    return (f"{path.name}: rt test {rt.equal}/{len(texts)} equal (ort==hwsim==intref), "
            f"random {rnd.equal}/{args.random} equal ({span}, padded)"
            f"  [rt {rt_span}, {rt.batches} batches, {rt.comparisons + rnd.comparisons} comparisons, "
            f"{rt.ort_calls + rnd.ort_calls} onnxruntime calls; load {load_s:.1f} s, rt {rt_s:.1f} s, "
            f"random {rnd_s:.1f} s]")


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    from models.errors import UserError
    from quant.data.tasks import load_split

    torch.set_num_threads(args.threads)
    threadpool_limits(limits=args.threads, user_api="blas")
    t0 = time.perf_counter()
    try:
        texts = list(load_split("rt", "test", limit=args.limit).texts)
        for path in args.models:
            print(check_model(Path(path), texts, args), flush=True)
    except Failure as err:
        print(str(err), flush=True)
        print(f"bitexact: FAILED after {time.perf_counter() - t0:.1f} s", flush=True)
        return 1
    except UserError as err:
        print(f"bitexact: error: {err}", file=sys.stderr, flush=True)
        return 2
    print(f"bitexact: all {len(args.models)} model(s) bit-exact; wall {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
