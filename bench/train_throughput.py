"""Training throughput: our distillation loop against a plain PyTorch fine-tuning loop, in one run.

Ours: a float dot student (ReLU, built from the teacher) trained with task distillation (KL + CE +
hidden + context losses) by `quant.train.loop` (`_prepare`, then `_train_step` on the sampler's
length-grouped batches), reading the teacher from a teacher store (`quant.train.store`, built
first and timed apart). Peer: `transformers.BertForSequenceClassification` with the teacher's
MiniLM config and weights, cross-entropy, `torch.optim.AdamW` with its defaults, random batches
padded to their longest snippet (dynamic padding). Same snippets (the first `--steps` x 16 of the
RT training split), batch 16, truncation 64, same thread count. The steps alternate (one of ours,
one of the peer's), so load on a shared machine hits both alike; the first `--warmup` of each are
not timed. Prints real (non-pad) training tokens per second of each and the ratio ours / peer
(target >= 1.0), in wall time and in the process's CPU time. OpenMP threads spin briefly before they sleep
(`models.threads`) unless OMP_WAIT_POLICY or GOMP_SPINCOUNT says otherwise, as under `hwsim`.

    python bench/train_throughput.py [--steps 40] [--teacher DIR] [--threads N] [--peer-fused-adamw]

`--teacher`: a run of `hwsim train --float` (default: MiniLM with a random head saved as one;
the cost is the same).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from models.threads import set_thread_waiting  # noqa: E402

set_thread_waiting()  # as `hwsim` does (hwsim/app/cli.py), for both loops
import torch  # noqa: E402


def teacher_folder(arg: str | None, scratch: Path) -> str:
    """`arg`, or MiniLM with a random classification head saved in our checkpoint format."""
    if arg:
        return arg
    from models.loading import load_pretrained, load_tokenizer, save_checkpoint
    from models.teacher import resolve_teacher
    source = resolve_teacher("minilm")
    torch.manual_seed(0)
    model = load_pretrained(source, "dot", 2)
    save_checkpoint(model, model.cfg, scratch / "teacher", load_tokenizer(source))
    return str(scratch / "teacher")


def ours(teacher: str, steps: int, scratch: Path):
    """(step function, batches) of our loop; the step returns its batch's real tokens."""
    from quant.data.tasks import get_task
    from quant.train.distill import DistillConfig
    from quant.train.loop import TrainConfig, _prepare, _train_step
    from quant.train.runtime import setup_distributed, take
    from quant.train.state import make_optimizer
    cfg = TrainConfig(out=str(scratch / "ours"), task="rt", attention="dot", teacher=teacher, float_model=True,
                      distill=DistillConfig(mode="task"), batch_size=16, max_length=64, lr=2e-4,
                      train_limit=steps * 16, teacher_store=str(scratch / "store"))
    start = time.perf_counter()
    run = _prepare(cfg, setup_distributed(), get_task("rt"), None)
    print(f"ours: prepared in {time.perf_counter() - start:.1f} s (data, student, teacher store of "
          f"{len(run.data['train']['labels'])} snippets)")
    opt, sched = make_optimizer(cfg, run.runner, run.per_epoch)
    torch.manual_seed(cfg.seed)
    run.runner.train()
    batches = [take(run.data["train"], idx, run.world.device) for idx in run.sampler.batches(0)]

    def step(i: int) -> int:
        b = batches[i % len(batches)]
        _train_step(run, b, opt, sched)
        return int(b["attention_mask"].sum())

    return step, run.data["train"]


def peer(train: dict[str, torch.Tensor], fused: bool):
    """The plain transformers loop on the same snippets, from MiniLM's weights; the step returns its
    batch's real tokens."""
    from transformers import BertForSequenceClassification
    from transformers.utils import logging
    from models.teacher import resolve_teacher
    logging.set_verbosity_error()  # the classifier head is new: no report of it
    model = BertForSequenceClassification.from_pretrained(resolve_teacher("minilm"), num_labels=2).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, **({"fused": True} if fused else {}))
    n = len(train["labels"])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    batches = []
    for i in range(0, n, 16):
        idx = order[i:i + 16]
        width = int(train["attention_mask"][idx].sum(1).max())  # dynamic padding
        batches.append({"input_ids": train["input_ids"][idx, :width], "attention_mask":
                        train["attention_mask"][idx, :width], "labels": train["labels"][idx]})

    def step(i: int) -> int:
        b = batches[i % len(batches)]
        loss = model(**b).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return int(b["attention_mask"].sum())

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps of each loop")
    parser.add_argument("--warmup", type=int, default=3, help="untimed first steps of each loop")
    parser.add_argument("--teacher", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--peer-fused-adamw", action="store_true", help="give the peer torch's fused AdamW too")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        teacher = teacher_folder(args.teacher, scratch)
        total = args.steps + args.warmup
        ours_step, train = ours(teacher, total, scratch)
        loops = {"ours": ours_step, "peer": peer(train, args.peer_fused_adamw)}
        tokens = {k: 0 for k in loops}
        wall = {k: 0.0 for k in loops}
        cpu = {k: 0.0 for k in loops}
        for i in range(total):
            for name, step in loops.items():
                w, c = time.perf_counter(), time.process_time()
                real = step(i)
                if i >= args.warmup:
                    wall[name] += time.perf_counter() - w
                    cpu[name] += time.process_time() - c
                    tokens[name] += real
    print(f"{torch.get_num_threads()} threads, {args.steps} timed steps of 16 snippets each (RT, truncation 64); "
          f"peer AdamW {'fused' if args.peer_fused_adamw else 'torch default'}")
    for name in loops:
        print(f"{name}: {tokens[name]} real tokens, {wall[name]:.1f} s wall ({tokens[name] / wall[name]:.0f} tok/s), "
              f"{cpu[name]:.1f} s CPU ({tokens[name] / cpu[name]:.0f} tok per CPU s)")
    rate = {k: tokens[k] / wall[k] for k in loops}
    rate_cpu = {k: tokens[k] / cpu[k] for k in loops}
    print(f"ratio ours / peer: {rate['ours'] / rate['peer']:.2f}x wall, {rate_cpu['ours'] / rate_cpu['peer']:.2f}x CPU "
          f"(target >= 1.0)")


if __name__ == "__main__":
    main()
