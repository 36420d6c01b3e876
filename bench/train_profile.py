"""Where a distillation training step goes: phase times of float and QAT student steps, the inhibitor
calibration and the layer-by-layer init, on real RT batches with the MiniLM architecture.

Each step of `quant.train.loop._train_step` is timed in its phases: teacher forward (or the teacher
store's read), student forward, loss, backward, gradient clipping, AdamW step. Students: float dot,
float inhibitor (built from the teacher and calibrated as `hwsim train` does) and QAT W8A8 of each.
Batches: the first `--steps` length-grouped training batches of the RT split (batch 16, truncation
64), the same for every model; medians over the steps after a warm-up step.

    python bench/train_profile.py [--teacher DIR] [--steps 8] [--threads N] [--store DIR] [--ops]

`--teacher`: a fine-tuned float run (`hwsim train --float`), else MiniLM with a random head (same
cost). `--store DIR`: the teacher read from a teacher store in DIR (`quant.train.store`) built for the
profiled snippets.
`--ops`: print torch.profiler's top operators of one inhibitor step.
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager

import torch
from torch import nn

from models.loading import load_pretrained, load_tokenizer
from models.teacher import resolve_teacher
from quant.data.tasks import encode, get_task, load_split
from quant.train.distill import DistillConfig, HiddenProjection, calibrate_inhibitor, distill_loss, layerwise_init
from quant.train.loop import TrainConfig, _is_fine_tuned, load_fine_tuned, student_from
from quant.train.runtime import length_sampler, quantize, take
from quant.train.state import make_optimizer


class Phases:
    """Accumulated time per named phase: CPU time of the process (all threads; on a shared machine
    it moves far less with the load than wall time does), or wall time (`wall=True`)."""

    def __init__(self, wall: bool = False):
        self.clock = time.perf_counter if wall else time.process_time
        self.times: dict[str, list[float]] = {}

    @contextmanager
    def __call__(self, name: str):
        start = self.clock()
        yield
        self.times.setdefault(name, []).append(self.clock() - start)

    def medians(self, skip: int = 1) -> dict[str, float]:
        return {k: statistics.median(v[skip:] or v) for k, v in self.times.items()}


def timed_step(student, teacher, proj, batch, opt, sched, cfg: DistillConfig, clock: Phases) -> None:
    """`_train_step` with its phases timed (`teacher` None: no distillation)."""
    with clock("teacher"):
        target = None
        if teacher is not None:
            with torch.no_grad():
                t_logits, t_out = teacher.forward_all(batch["input_ids"], batch["attention_mask"])
            target = (t_logits, t_out.hidden_states, t_out.contexts)
    with clock("student fwd"):
        logits, out = student.forward_all(batch["input_ids"], batch["attention_mask"])
    with clock("loss"):
        loss, _ = distill_loss(cfg, batch["attention_mask"], batch["labels"],
                               (logits, out.hidden_states, out.contexts), target, proj)
    with clock("backward"):
        opt.zero_grad(set_to_none=True)
        loss.backward()
    with clock("clip"):
        nn.utils.clip_grad_norm_(student.parameters(), 1.0)
    with clock("adamw"):
        opt.step()
        sched.step()


def profile_steps(name, student, teacher, batches, tcfg: TrainConfig, steps: int, wall: bool) -> dict[str, float]:
    student.train()
    proj = HiddenProjection(student.cfg.hidden, 384, student.cfg.layers + 1)
    opt, sched = make_optimizer(tcfg, student, 1000)
    clock = Phases(wall)
    for b in batches[:steps + 1]:
        timed_step(student, teacher, proj, b, opt, sched, tcfg.distill, clock)
    med = clock.medians()
    total = sum(med.values())
    tokens = statistics.median(int(b["attention_mask"].sum()) for b in batches[1:steps + 1])
    print(f"{name:22s} {total * 1e3:7.0f} ms/step ({tokens / total:6.0f} real tok per s): " + ", ".join(
        f"{k} {v * 1e3:.0f} ({100 * v / total:.0f}%)" for k, v in med.items()))
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=None)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--store", default=None)
    parser.add_argument("--ops", action="store_true")
    parser.add_argument("--wall", action="store_true", help="wall time instead of the process's CPU time")
    parser.add_argument("--only", default="dot,inhibitor,qat-dot,qat-inhibitor,init")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    now = time.perf_counter if args.wall else time.process_time
    only = set(args.only.split(","))
    torch.manual_seed(0)
    source = resolve_teacher(args.teacher or "minilm")
    teacher = (load_fine_tuned(str(source), "--teacher")[0] if _is_fine_tuned(source)
               else load_pretrained(source, "dot", 2)).eval()
    tcfg = TrainConfig(out="-", batch_size=16, max_length=64, float_model=True)
    train = encode(load_split("rt", "train"), load_tokenizer(source), tcfg.max_length)
    order = length_sampler(tcfg, train, 0).batches(0)
    batches = [take(train, idx, torch.device("cpu")) for idx in order[:args.steps + 1]]
    print(f"{torch.get_num_threads()} threads; {len(train['labels'])} training snippets; batches of 16, widths "
          f"{[b['input_ids'].shape[1] for b in batches]}")
    calib = [take(train, idx, torch.device("cpu")) for idx in length_sampler(tcfg, train, 1).batches(0)[:4]]
    source_teacher = teacher
    if args.store:  # a store of just the snippets timed here (it answers by content)
        from quant.train.store import open_store
        rows = torch.tensor(sorted({i for idx in order[:args.steps + 1] for i in idx} |
                                   {i for idx in length_sampler(tcfg, train, 1).batches(0)[:4] for i in idx}))
        start = time.perf_counter()
        teacher = open_store(args.store, teacher, {k: v[rows] for k, v in train.items()}, tcfg.max_length)
        print(f"teacher store of {len(rows)} snippets: {time.perf_counter() - start:.1f} s wall")
    dot = student_from(source_teacher, "dot", activation="relu")[0]
    inh = student_from(source_teacher, "inhibitor", activation="relu")[0]  # the trained options (InhibitorOptions())
    start = now()  # always: an uncalibrated inhibitor inhibits everything, which the kernels skip
    calibrate_inhibitor(inh, teacher, calib)
    print(f"inhibitor calibration (4 batches): {now() - start:.1f} s")
    if "init" in only:
        layerwise_init(inh, teacher, batches[:1])  # warm-up (first calls of the kernels, optimizer state)
        start = now()
        layerwise_init(inh, teacher, batches[1:args.steps + 1])
        took = (now() - start) / args.steps
        print(f"layer-by-layer init: {took * 1e3:.0f} ms/batch")
    for name, model in (("dot", dot), ("inhibitor", inh)):
        if name in only:
            profile_steps(f"float {name}", model, teacher, batches, tcfg, args.steps, args.wall)
    for name, model in (("dot", dot), ("inhibitor", inh)):
        if f"qat-{name}" in only:
            qmodel = quantize(TrainConfig(out="-", batch_size=16, bits=8), model, train, torch.device("cpu"))[0]
            profile_steps(f"QAT W8A8 {name}", qmodel, teacher, batches, tcfg, args.steps, args.wall)
    if args.ops:
        from torch.profiler import ProfilerActivity, profile
        student = inh.train()
        proj = HiddenProjection(384, 384, 7)
        opt, sched = make_optimizer(tcfg, student, 1000)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for b in batches[1:4]:
                timed_step(student, teacher, proj, b, opt, sched, tcfg.distill, Phases())
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
