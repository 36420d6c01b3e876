"""The training loop: float fine-tuning, or quantization-aware training with distillation.

One frozen `TrainConfig` drives `train(cfg)`:
- float (`float_model=True`): the teacher itself (attention 'dot') or a student built from the
  teacher's weights with another attention, fine-tuned with cross-entropy;
- QAT: a float student (`init_student`, else the fine-tuned teacher's weights under `attention`),
  optionally fitted layer by layer to the teacher's attention contexts, then `quantize_model` +
  `calibrate`, then trained with the loss of `quant.train.distill` against the float teacher.
AdamW (no decay on biases and LayerNorm), linear warm-up then linear decay to 0, gradient clipping,
evaluation on validation after each epoch, best checkpoint by the task's main metric in `out`.

Determinism and resume: the data order of epoch e is that of a `DistributedSampler` seeded with
(seed, e); dropout draws from the torch RNG, seeded per rank before the first step and saved in
every training checkpoint, so a resumed run repeats the uninterrupted one step for step.
Under `torchrun` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel (gloo on CPU,
nccl on CUDA); only rank 0 evaluates, writes files and shows the progress bar.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from models.errors import UserError
from models.files import write_text_atomic
from quant.train import checkpoint as ckpt
from quant.train.distill import DISTILL_MODES, HIDDEN_LOSSES, DistillConfig, HiddenProjection, distill_loss

EXIT_HOOK = "HWSIM_TRAIN_EXIT_AFTER_STEP"  # test hook: os._exit(3) after this global step


@dataclass(frozen=True)
class TrainConfig:
    out: str
    task: str = "rt"
    attention: str = "dot"
    teacher: str = "minilm"
    float_model: bool = False
    bits: int = 8
    distill: DistillConfig = field(default_factory=DistillConfig)
    epochs: int = 1
    batch_size: int = 32
    eval_batch_size: int = 128
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.1              # fraction of all steps
    max_grad_norm: float = 1.0
    max_length: int = 64
    limit: int | None = None         # first N examples of every split
    train_limit: int | None = None   # first N training examples (evaluation splits stay whole)
    data_dir: str | None = None
    seed: int = 0
    save_every: int = 0              # 0 = no training checkpoints
    resume: bool = False
    init_student: str | None = None
    layer_init_steps: int = 0        # per layer; 0 = no layer-by-layer initialisation
    layer_init_lr: float = 1e-4
    calib_batches: int = 4
    # an inhibitor student built from a dot-product model's weights (REFERENCE.md section 1)
    inhibitor_center: bool = True    # subtract the mean score over keys
    inhibitor_signed: bool = True    # signed inhibition keeps negative values (unsigned drops them)
    alpha_init: float = 0.5          # <= 0 disables the shift
    calibrate_inhibitor: bool = True  # fit gamma, beta per layer to the teacher's contexts first

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "eval_batch_size", "max_length", "calib_batches")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 <= self.warmup < 1:
            raise UserError(f"need lr > 0 and 0 <= warmup < 1, got lr={self.lr}, warmup={self.warmup}")
        if self.save_every < 0 or self.layer_init_steps < 0:
            raise UserError("--save-every and --layer-init-steps must be >= 0")
        if not 2 <= self.bits <= 16:
            raise UserError(f"--bits must be in 2..16, got {self.bits}")
        if self.distill.mode not in DISTILL_MODES:
            raise UserError(f"unknown --distill {self.distill.mode!r}: use one of {', '.join(DISTILL_MODES)}")
        if self.distill.hidden_loss not in HIDDEN_LOSSES:
            raise UserError(f"unknown hidden loss {self.distill.hidden_loss!r}: use one of {', '.join(HIDDEN_LOSSES)}")
        if self.float_model and self.distill.mode != "none":
            raise UserError("--float fine-tunes without distillation: drop --distill (or pass --distill none)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- processes and data

@dataclass(frozen=True)
class Dist:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1; otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if world > 1 and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Dist(rank, world, device)


def load_data(cfg: TrainConfig, spec, tokenizer) -> dict[str, dict[str, torch.Tensor]]:
    from quant.data.tasks import encode, load_split
    def limit(split: str) -> int | None:
        caps = [n for n in (cfg.limit, cfg.train_limit if split == "train" else None) if n is not None]
        return min(caps) if caps else None
    return {s: encode(load_split(cfg.task, s, cfg.data_dir, limit(s)), tokenizer, cfg.max_length)
            for s in spec.splits}


def take(data: dict[str, torch.Tensor], idx, device: torch.device) -> dict[str, torch.Tensor]:
    """Rows `idx`, trimmed to the longest sequence among them (padding is on the right)."""
    idx = torch.as_tensor(idx, dtype=torch.long)
    mask = data["attention_mask"][idx]
    n = max(int(mask.sum(1).max()), 1)
    return {"input_ids": data["input_ids"][idx, :n].to(device), "attention_mask": mask[:, :n].to(device),
            "labels": data["labels"][idx].to(device)}


def epoch_batches(sampler: DistributedSampler, epoch: int, batch_size: int) -> list[list[int]]:
    sampler.set_epoch(epoch)
    order = list(sampler)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


# ---------------------------------------------------------------- models

def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def load_fine_tuned(folder: str, role: str):
    """(model, EncoderConfig) of a folder written by `hwsim train --float`."""
    from models.loading import load_checkpoint
    path = Path(folder)
    if not (path / "config.json").is_file() or "encoder_config" not in _read_json(path / "config.json") \
            or not (path / "model.safetensors").is_file():
        raise UserError(f"{role} {folder} holds no fine-tuned float checkpoint (config.json with "
                        f"'encoder_config' and model.safetensors): run `hwsim train --float --out {folder}` "
                        f"first, or pass --distill none with --teacher minilm")
    return load_checkpoint(path)


def student_from(teacher: nn.Module, attention: str, **overrides):
    """A float classifier with `attention`, initialised from `teacher`'s weights under the variant's
    names (`Attention.from_dot_state`: symmetric attention takes its shared projection from the
    teacher's queries; parameters new to the variant keep their initial values). `overrides` are
    further `EncoderConfig` fields (inhibitor options)."""
    from models.attention import attention_class
    from models.encoder import SequenceClassifier
    cfg = teacher.cfg.replace(attention=attention, **overrides)
    student = SequenceClassifier(cfg)
    state = attention_class(attention).from_dot_state(teacher.state_dict())
    own = student.state_dict()
    student.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return student, cfg


class Outputs(nn.Module):
    """forward -> (logits, hidden_states, contexts), so that DDP sees every use of the parameters."""

    def __init__(self, model: nn.Module, full: bool, proj: HiddenProjection | None):
        super().__init__()
        self.model, self.full, self.proj = model, full, proj

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        if not self.full:
            return self.model(input_ids, attention_mask), (), ()
        logits, out = self.model.forward_all(input_ids, attention_mask)
        return logits, tuple(out.hidden_states), tuple(out.contexts)


def _is_fine_tuned(folder: Path) -> bool:
    return "encoder_config" in _read_json(folder / "config.json")


def build(cfg: TrainConfig, spec) -> dict[str, Any]:
    """The float model to train (before quantization), its config, the distillation teacher (or
    None), the teacher for the layer-by-layer initialisation (or None) and the dot-product model an
    inhibitor student was just built from (for `calibrate_inhibitor`, or None)."""
    from models.loading import load_pretrained
    from models.teacher import resolve_teacher
    source = resolve_teacher(cfg.teacher)
    if cfg.float_model:
        init_teacher = None
        if cfg.layer_init_steps and cfg.attention != "dot":
            init_teacher = (load_fine_tuned(str(source), "--teacher")[0] if _is_fine_tuned(source)
                            else load_pretrained(source, "dot", spec.num_labels))
    else:
        needs = cfg.distill.mode != "none" or _is_fine_tuned(source)
        init_teacher = load_fine_tuned(str(source), "--teacher")[0] if needs else None
    if cfg.init_student:
        model, enc_cfg = load_fine_tuned(cfg.init_student, "--init-student")
    elif _is_fine_tuned(source):
        model, enc_cfg = load_fine_tuned(str(source), "--teacher")
    else:
        # as written (dot); `student_from` below converts it, so a Hugging Face teacher gets the same
        # inhibitor options and calibration as a fine-tuned one
        model = load_pretrained(source, "dot", spec.num_labels)
        enc_cfg = model.cfg
    calib_teacher = None
    if enc_cfg.attention != cfg.attention:
        from models.attention import attention_class
        variant = attention_class(cfg.attention)
        calib_teacher = model if variant.calibrates_from_dot(cfg) and enc_cfg.attention == "dot" else None
        model, enc_cfg = student_from(model, cfg.attention, **variant.student_overrides(cfg))
    teacher = init_teacher if not cfg.float_model and cfg.distill.mode != "none" else None
    return {"model": model.train(), "enc_cfg": enc_cfg, "teacher": teacher, "init_teacher": init_teacher,
            "calib_teacher": calib_teacher}


def quantize(cfg: TrainConfig, model: nn.Module, data, device):
    from quant.qat.config import QuantConfig
    from quant.qat.model import calibrate, quantize_model
    qcfg = QuantConfig(weight_bits=cfg.bits, act_bits=cfg.bits)
    qmodel = quantize_model(model, qcfg).to(device)
    n = len(data["labels"])
    batches = [take(data, range(i, min(i + cfg.batch_size, n)), device)
               for i in range(0, min(n, cfg.calib_batches * cfg.batch_size), cfg.batch_size)]
    calibrate(qmodel, [{k: b[k] for k in ("input_ids", "attention_mask")} for b in batches])
    return qmodel, qcfg


# ---------------------------------------------------------------- optimisation

def make_optimizer(cfg: TrainConfig, module: nn.Module, total_steps: int):
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    warm = int(cfg.warmup * total_steps)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


@torch.no_grad()
def evaluate(model: nn.Module, spec, data, batch_size: int, device) -> dict[str, float]:
    from quant.data.metrics import compute_metrics
    was_training = model.training
    model.eval()
    n = len(data["labels"])
    logits = [model(**{k: v for k, v in take(data, range(i, min(i + batch_size, n)), device).items()
                       if k != "labels"}).float().cpu() for i in range(0, n, batch_size)]
    model.train(was_training)
    return {k: float(v) for k, v in compute_metrics(spec, torch.cat(logits), data["labels"]).items()}


# ---------------------------------------------------------------- the loop

def _resume_state(cfg: TrainConfig) -> dict[str, Any] | None:
    if not cfg.resume:
        return None
    path = ckpt.latest_checkpoint(cfg.out)
    if path is None:
        raise UserError(f"--resume: no training checkpoint in {ckpt.checkpoint_dir(cfg.out)}; start without "
                        f"--resume (pass --save-every N to write checkpoints)")
    state = ckpt.load_state(path)
    saved = json.loads(state["meta"])["config"]
    mine = dict(cfg.to_dict(), resume=saved["resume"])
    changed = sorted(k for k in mine if mine[k] != saved.get(k))
    if changed:
        raise UserError(f"--resume: the checkpoint {path} was written with different settings ({', '.join(changed)}); "
                        f"resume with the original arguments or start a new --out")
    return state


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run the training that `cfg` describes; returns the final metrics (rank 0; {} elsewhere)."""
    from models.loading import load_tokenizer
    from models.teacher import resolve_teacher
    from quant.data.tasks import get_task
    from quant.train.distill import calibrate_inhibitor, layerwise_init

    world = setup_distributed()
    torch.manual_seed(cfg.seed)
    spec = get_task(cfg.task)
    state = _resume_state(cfg)
    if world.main:
        ckpt.remove_partial_files(cfg.out)  # left by a run killed while writing
    say = tqdm.write if world.main else (lambda *a, **k: None)
    tokenizer = load_tokenizer(resolve_teacher(cfg.teacher) if not cfg.init_student else cfg.init_student)
    data = load_data(cfg, spec, tokenizer)
    eval_split = "validation" if "validation" in data else "test"
    parts = build(cfg, spec)
    model, teacher = parts["model"], parts["teacher"]
    batches = [take(data["train"], range(i, i + cfg.batch_size), torch.device("cpu"))
               for i in range(0, min(len(data["train"]["labels"]) - cfg.batch_size + 1, 8 * cfg.batch_size),
                              cfg.batch_size)] or [take(data["train"], range(len(data["train"]["labels"])), "cpu")]
    if parts["calib_teacher"] is not None and state is None:
        fits = calibrate_inhibitor(model, parts["calib_teacher"], batches[:cfg.calib_batches])
        say("inhibitor calibration (gamma/sqrt(d) = 2**e, beta, context residual) per layer: " + "; ".join(
            f"2**{f['exponent']:.0f} {f['beta']:.4f} {f['residual']:.3f}" for f in fits))
    if cfg.layer_init_steps and parts["init_teacher"] is not None and state is None:
        finals = layerwise_init(model, parts["init_teacher"], batches, cfg.layer_init_steps, cfg.layer_init_lr)
        say(f"layer-by-layer init: final context MSE per layer {[round(f, 5) for f in finals]}")
    model = model.to(world.device)
    qcfg = None
    if not cfg.float_model:
        model, qcfg = quantize(cfg, model, data["train"], world.device)
    if teacher is not None:
        teacher = teacher.to(world.device).eval().requires_grad_(False)
    full = teacher is not None
    t_width = teacher.cfg.hidden if teacher is not None else parts["enc_cfg"].hidden
    proj = HiddenProjection(parts["enc_cfg"].hidden, t_width, parts["enc_cfg"].layers + 1) if full else None
    wrapped = Outputs(model, full, proj).to(world.device)
    if state is not None:
        wrapped.load_state_dict(state["model"])
    runner = wrapped
    if world.world > 1:
        runner = nn.parallel.DistributedDataParallel(wrapped, device_ids=[world.device.index]
                                                     if world.device.type == "cuda" else None)

    n_train = len(data["train"]["labels"])
    sampler = DistributedSampler(range(n_train), num_replicas=world.world, rank=world.rank,
                                 shuffle=True, seed=cfg.seed, drop_last=False)
    per_epoch = math.ceil(len(sampler) / cfg.batch_size)
    total = per_epoch * cfg.epochs
    opt, sched = make_optimizer(cfg, runner, total)
    meta = {"config": cfg.to_dict(), "best": None, "history": [], "epochs_done": 0, "running": {}}
    step = 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        meta, step = json.loads(state["meta"]), int(state["step"])
        ckpt.set_rng_state(state["rng"][world.rank])
        say(f"resumed from step {step} of {total}")
    else:
        torch.manual_seed(cfg.seed * 1_000_003 + world.rank)  # dropout stream of this rank
    exit_after = int(os.environ.get(EXIT_HOOK, "0"))

    def save_best(metrics: dict[str, float], epoch: int) -> None:
        extra = {"validation": metrics, "epoch": epoch, "train_config": cfg.to_dict()}
        if cfg.float_model:
            from models.loading import save_checkpoint
            save_checkpoint(model, parts["enc_cfg"], cfg.out, tokenizer, extra)
        else:
            ckpt.save_quant_run(model, parts["enc_cfg"], qcfg, cfg.out, tokenizer, extra)

    bar = tqdm(total=total, initial=step, disable=not world.main, desc=f"train {cfg.task}", dynamic_ncols=True)
    start = time.perf_counter()
    runner.train()
    for epoch in range(meta["epochs_done"], cfg.epochs):  # a checkpoint may precede its epoch's evaluation
        batches = epoch_batches(sampler, epoch, cfg.batch_size)
        for idx in batches[step - epoch * per_epoch:]:
            batch = take(data["train"], idx, world.device)
            student = runner(batch["input_ids"], batch["attention_mask"])
            target = None
            if teacher is not None:
                with torch.no_grad():
                    t_logits, t_out = teacher.forward_all(batch["input_ids"], batch["attention_mask"])
                target = (t_logits, t_out.hidden_states, t_out.contexts)
            loss, named = distill_loss(cfg.distill, batch["attention_mask"], batch["labels"], student, target, proj)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm:
                nn.utils.clip_grad_norm_(runner.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            step += 1
            running = meta["running"]  # moving averages of the loss parts, saved with the state
            meta["running"] = {k: v if k not in running else 0.98 * running[k] + 0.02 * v for k, v in named.items()}
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in meta["running"].items()}, refresh=False)
            if cfg.save_every and step % cfg.save_every == 0:
                _save_training_state(cfg, world, step, wrapped, opt, sched, meta)
            if exit_after and step == exit_after:
                os._exit(3)
        if world.main:
            metrics = evaluate(model, spec, data[eval_split], cfg.eval_batch_size, world.device)
            meta["history"].append({"epoch": epoch, "step": step, "loss": dict(meta["running"]), eval_split: metrics})
            say(f"epoch {epoch}: {eval_split} {metrics}")
            value = metrics[spec.main_metric]
            if meta["best"] is None or value > meta["best"]["value"]:
                meta["best"] = {"value": value, "epoch": epoch, "metrics": metrics}
                save_best(metrics, epoch)
        meta["epochs_done"] = epoch + 1
        if world.world > 1:
            dist.barrier()
    bar.close()
    result: dict[str, Any] = {}
    if world.main:
        result = final_metrics(cfg, spec, data, meta, time.perf_counter() - start, world.device, eval_split)
    if world.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


def _save_training_state(cfg, world: Dist, step: int, wrapped, opt, sched, meta) -> None:
    """Collective (every rank gathers its RNG state to all); rank 0 writes."""
    rngs = [ckpt.rng_state()]
    if world.world > 1:
        rngs = [None] * world.world
        dist.all_gather_object(rngs, ckpt.rng_state())
    if world.main:
        ckpt.save_state(cfg.out, step, {"model": wrapped.state_dict(), "optimizer": opt.state_dict(),
                                        "scheduler": sched.state_dict(), "rng": rngs, "step": step,
                                        "meta": json.dumps(meta)})


def final_metrics(cfg: TrainConfig, spec, data, meta, seconds: float, device, eval_split: str) -> dict[str, Any]:
    """Reload the best checkpoint from `out`, evaluate it on every split but train and `eval_split`
    (whose metrics it got when it became the best), write metrics.json."""
    if cfg.float_model:
        from models.loading import load_checkpoint
        best = load_checkpoint(cfg.out)[0]
    else:
        best = ckpt.load_quant_run(cfg.out)
    best = best.to(device)
    result = {"task": cfg.task, "attention": cfg.attention, "float": cfg.float_model,
              "bits": None if cfg.float_model else cfg.bits, "distill": cfg.distill.mode,
              "best_epoch": meta["best"]["epoch"], "main_metric": spec.main_metric,
              "train_seconds": round(seconds, 1), "history": meta["history"], "config": cfg.to_dict()}
    for split in data:
        if split == eval_split:  # measured on this very model when it became the best (tests check equality)
            result[split] = meta["best"]["metrics"]
        elif split != "train":
            result[split] = evaluate(best, spec, data[split], cfg.eval_batch_size, device)
    write_text_atomic(Path(cfg.out) / "metrics.json", json.dumps(result, indent=2) + "\n")
    return result
