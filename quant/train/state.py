"""Training state of `quant.train.loop`: the optimizer and schedule, the resume check, and saving and
restoring everything a resumed run needs to repeat the uninterrupted one step for step.

What is saved and where: `quant.train.checkpoint` (module docstring). `meta` is the JSON-able part
of the progress: {"config", "best", "history", "epochs_done", "running"}.
"""
from __future__ import annotations

import json
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from models.errors import UserError
from models.settings import filled
from quant.train import checkpoint as ckpt


def make_optimizer(cfg, module: nn.Module, total_steps: int):
    """AdamW (no decay on biases, norms and the attention's declared scalars, which train at
    `cfg.scalar_lr`; torch's fused kernel: the same update as the for-loop one to the last bit of float32
    rounding, 31 ms instead of 164 ms a step for MiniLM's 22.7 M parameters on one core) and a linear
    warm-up then linear decay to 0 over `total_steps`; `cfg` is the loop's TrainConfig."""
    from quant.train.distill import rounded_ids, scalar_ids
    decay, no_decay, scalars, rounded = [], [], [], []
    own, steps = scalar_ids(module), rounded_ids(module)
    for name, p in module.named_parameters():
        if p.requires_grad:
            (rounded if id(p) in steps else scalars if id(p) in own else
             no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if scalars:
        groups.append({"params": scalars, "weight_decay": 0.0, "lr": cfg.scalar_lr})
    if rounded:
        lr = rounded_lr(cfg.scalar_lr, total_steps // cfg.epochs)
        groups.append({"params": rounded, "weight_decay": 0.0, "lr": lr})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, fused=True)  # one vectorised pass: 5x the for-loop's speed on CPU
    warm = int(cfg.warmup * total_steps)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


ROUNDED_TRAVEL = 2.0  # twice the largest move (log2 units) Adam can make a rounded scalar in an epoch


def rounded_lr(scalar_lr: float, steps_per_epoch: int) -> float:
    """The rate of the quantized inhibitor's log2 scalars under the log parametrisation
    (`rounded_parameters`): max(scalar_lr, ROUNDED_TRAVEL / steps_per_epoch) = max(scalar_lr, 2 / S).

    They start at integers (`QInhibitorAttention.quant_state` rounds log2 gamma/sqrt(d) and log2 beta and
    folds the remainders into q/k/v) and are rounded to the nearest integer straight-through, so they
    change the model only once they cross a boundary 0.5 away. Adam moves a parameter by at most about
    its rate per step (|m / sqrt(v)| <= 1, reached when the gradient keeps its sign), and the schedule
    (10 % warm-up, then linear decay to 0) sums to about half the steps, so a rate r moves it by at most
    r * S / 2 in an epoch of S steps: at `scalar_lr` 1e-3 that is 0.03 in the demo's 63 QAT steps and 0.32
    in the full recipe's 644: never across. 2 / S allows one log2 unit in a one-epoch run: a gradient of
    steady sign crosses the boundary about half-way, a noisy one (Adam's step shrinks to about
    r * |mean| / rms of the gradient) stays put. Measured (`bench/log2_scalars.py`, one QAT epoch from
    one float student, both rates in the same run; moved = |end - start| over the 2 x layers scalars):
    - the tests' tiny BERT, 32 steps: at 1e-3 at most 0.0022, at 2 / 32 at most 0.138 (mean 0.071);
    - the demo's float inhibitor student (MiniLM, RT), its QAT stage's 1,000 snippets (63 steps): at
      1e-3 at most 0.0096 (mean 0.0039), at 2 / 63 at most 0.357 (mean 0.150), none of 12 across;
    - the same on 160 snippets (10 steps): at 1e-3 at most 0.0042, at 2 / 10 at most 0.944 (mean
      0.443), 3 of 12 across."""
    return max(scalar_lr, ROUNDED_TRAVEL / max(1, steps_per_epoch))


def resume_state(cfg) -> dict[str, Any] | None:
    """The latest training checkpoint in `cfg.out` when `cfg.resume`, else None. UserError when there
    is none, or when it was written with other settings (a resumed run must repeat the same one)."""
    if not cfg.resume:
        return None
    path = ckpt.latest_checkpoint(cfg.out)
    if path is None:
        raise UserError(f"--resume: no training checkpoint in {ckpt.checkpoint_dir(cfg.out)}; start without "
                        f"--resume (pass --save-every N to write checkpoints)")
    state = ckpt.load_state(path)
    saved = filled(type(cfg), json.loads(state["meta"])["config"])  # settings added since: their defaults
    mine = dict(cfg.to_dict(), resume=saved["resume"])
    changed = sorted(k for k in mine if mine[k] != saved.get(k))
    if changed:
        raise UserError(f"--resume: the checkpoint {path} was written with different settings ({', '.join(changed)}); "
                        f"resume with the original arguments or start a new --out")
    return state


def restore(cfg, rank: int, state: dict[str, Any] | None, opt, sched) -> tuple[dict[str, Any], int]:
    """(meta, global step) to continue from: those of `state` with its optimizer, schedule and this
    rank's RNG states loaded, or a fresh start with this rank's dropout stream seeded."""
    if state is None:
        torch.manual_seed(cfg.seed * 1_000_003 + rank)
        return {"config": cfg.to_dict(), "best": None, "history": [], "epochs_done": 0, "running": {}}, 0
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    ckpt.set_rng_state(state["rng"][rank])
    return json.loads(state["meta"]), int(state["step"])


def save_training_state(out: str, world, step: int, wrapped: nn.Module, opt, sched, meta: dict[str, Any]) -> None:
    """Collective (every rank gathers its RNG state to all); rank 0 writes checkpoint `step`."""
    rngs = [ckpt.rng_state()]
    if world.world > 1:
        rngs = [None] * world.world
        dist.all_gather_object(rngs, ckpt.rng_state())
    if world.main:
        ckpt.save_state(out, step, {"model": wrapped.state_dict(), "optimizer": opt.state_dict(),
                                    "scheduler": sched.state_dict(), "rng": rngs, "step": step,
                                    "meta": json.dumps(meta)})
