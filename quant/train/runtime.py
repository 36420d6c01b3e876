"""The pieces of a training run around the loop of `quant.train.loop`: processes (torchrun), data
batches, the student's initialisation and quantization before training, the wrapper DDP sees, and evaluation.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from models.files import write_text_atomic
from quant.train import checkpoint as ckpt
from quant.train.distill import HiddenProjection
from quant.train.sampler import LengthGroupedSampler

if TYPE_CHECKING:
    from quant.train.loop import TrainConfig


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


def add_transfer_set(cfg: TrainConfig, train: dict[str, torch.Tensor], tokenizer, teacher: nn.Module, say
                     ) -> dict[str, torch.Tensor]:
    """`train` followed by the teacher-labelled transfer set (`quant.data.transfer`): `transfer_copies`
    augmented variants of each of its snippets (substitutes from the teacher's input embeddings) and,
    with `transfer_plots`, the plot chunks of training movies; labels `UNLABELLED` (-1), so only the
    teacher's logits teach them. Both parts are right-padded to one width."""
    from quant.data.tasks import encode, load_split
    from quant.data.transfer import embedding_neighbours, load_rt_plots, transfer_split
    limit = min(n for n in (cfg.limit, cfg.train_limit, len(train["labels"])) if n is not None)
    snippets = load_split(cfg.task, "train", cfg.data_dir, limit)
    neighbours = (embedding_neighbours(tokenizer, teacher.encoder.embeddings.word.weight.detach())
                  if cfg.transfer_copies else {})
    plots = load_rt_plots("train", cfg.data_dir) if cfg.transfer_plots else None
    extra = encode(transfer_split(snippets, copies=cfg.transfer_copies, plots=plots, neighbours=neighbours,
                                  seed=cfg.seed), tokenizer, cfg.max_length)
    say(f"transfer set: {len(extra['labels'])} teacher-labelled examples ({cfg.transfer_copies} augmented "
        f"copies per snippet{', plot chunks of training movies' if plots is not None else ''}) after "
        f"{len(train['labels'])} labelled snippets")
    width = max(train["input_ids"].shape[1], extra["input_ids"].shape[1])
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]))  # noqa: E731 (right padding, 0)
    return {"input_ids": torch.cat([pad(train["input_ids"]), pad(extra["input_ids"])]),
            "attention_mask": torch.cat([pad(train["attention_mask"]), pad(extra["attention_mask"])]),
            "labels": torch.cat([train["labels"], extra["labels"].to(train["labels"].dtype)])}


def take(data: dict[str, torch.Tensor], idx, device: torch.device) -> dict[str, torch.Tensor]:
    """Rows `idx`, trimmed to the longest sequence among them (padding is on the right)."""
    idx = torch.as_tensor(idx, dtype=torch.long)
    mask = data["attention_mask"][idx]
    n = max(int(mask.sum(1).max()), 1)
    return {"input_ids": data["input_ids"][idx, :n].to(device), "attention_mask": mask[:, :n].to(device),
            "labels": data["labels"][idx].to(device)}


def length_sampler(cfg: TrainConfig, data: dict[str, torch.Tensor], seed: int, world: int = 1, rank: int = 0
                   ) -> LengthGroupedSampler:
    """The sampler of `data` (batches of `cfg.batch_size` per process, windows of `cfg.group_window`
    batches; 0: random batches), lengths read off the attention mask."""
    return LengthGroupedSampler(data["attention_mask"].sum(1), cfg.batch_size, seed=seed,
                                window=cfg.group_window, world=world, rank=rank)


# ---------------------------------------------------------------- the student before training

def shuffled_batches(data: dict[str, torch.Tensor], sampler: LengthGroupedSampler, steps: int):
    """`steps` batches (-1: one pass) of `data` in the order of `sampler` (pass p is its epoch p),
    each trimmed like `take` (on the CPU)."""
    per_pass = len(sampler)
    steps = per_pass if steps < 0 else steps
    order: list[list[int]] = []
    for step in range(steps):
        if step % per_pass == 0:
            order = sampler.batches(step // per_pass)
        yield take(data, order[step % per_pass], torch.device("cpu"))


def _fmt(value) -> str:
    """A calibration figure: `.4g`, a list of them (one per head) in brackets."""
    return f"[{' '.join(f'{v:.4g}' for v in value)}]" if isinstance(value, list) else f"{value:.4g}"


def initialise_student(cfg: TrainConfig, parts: dict[str, Any], train_data, say, show: bool = True) -> None:
    """The variant's calibration (`parts["calibration"]`, on the first `calib_batches` training batches of
    `length_sampler`) and the layer-by-layer init of the float student over the training split in that
    order (a fresh run only), then the whole-block stage (`block_init_steps`, `blockwise_init`)."""
    from quant.train.distill import layerwise_init
    model = parts["model"]
    if parts["calibration"] is not None:
        batches = list(shuffled_batches(train_data, length_sampler(cfg, train_data, cfg.seed + 1), cfg.calib_batches))
        fits = parts["calibration"](model, parts["calib_teacher"], batches)
        say(f"{cfg.attention} calibration per layer: " + "; ".join(
            ", ".join(f"{k} {_fmt(v)}" for k, v in f.items()) for f in fits))
    if cfg.layer_init_steps and parts["init_teacher"] is not None:
        steps = cfg.layer_init_steps
        total = -(-len(train_data["labels"]) // cfg.batch_size) if steps < 0 else steps
        bar = tqdm(total=total, desc="layer-by-layer init", dynamic_ncols=True, disable=not show)
        scores = None if parts["scores"] is None else (cfg.distill.score_weight, cfg.distill.score_temperature,
                                                      parts["scores"])
        finals = layerwise_init(model, parts["init_teacher"],
                                shuffled_batches(train_data, length_sampler(cfg, train_data, cfg.seed + 2), steps),
                                cfg.layer_init_lr, cfg.scalar_lr, progress=lambda step, losses: bar.update(1),
                                scores=scores)
        bar.close()
        loss = "context MSE + W x score KL" if scores is not None else "context MSE"
        say(f"layer-by-layer init ({total} batches): {loss} per layer over the last quarter "
            f"{[round(f, 5) for f in finals]}")
    if cfg.block_init_steps and parts["init_teacher"] is not None:
        from quant.train.distill import blockwise_init
        sampler = length_sampler(cfg, train_data, cfg.seed + 3)
        total = len(sampler) if cfg.block_init_steps < 0 else cfg.block_init_steps
        bar = tqdm(total=total, desc="whole-block init", dynamic_ncols=True, disable=not show)
        finals = blockwise_init(model, parts["init_teacher"], shuffled_batches(train_data, sampler, total), total,
                                cfg.layer_init_lr, cfg.scalar_lr, progress=lambda step, losses: bar.update(1))
        bar.close()
        say(f"whole-block init ({total} batches): hidden-state MSE per block over the last quarter "
            f"{[round(f, 5) for f in finals]}")


def use_teacher_store(cfg: TrainConfig, parts: dict[str, Any], train_data, world: Dist, say) -> dict[str, Any]:
    """`parts` with every teacher role (distillation, layer-by-layer init, calibration) whose model is
    the stored one replaced by the `quant.train.store.TeacherStore` of `cfg.teacher_store` (built by
    rank 0 when missing); a role held by another model (a calibration model read from --init-student)
    stays online."""
    from quant.train.store import model_digest, open_store
    roles = ("teacher", "init_teacher", "calib_teacher")
    source = next((parts[r] for r in roles if parts[r] is not None), None)
    if source is None:
        return parts
    store = open_store(cfg.teacher_store, source, train_data, cfg.max_length, say) if world.main else None
    if world.world > 1:
        dist.barrier()
        if not world.main:
            store = open_store(cfg.teacher_store, source, train_data, cfg.max_length, say, build=False)
    digest = store.meta["fingerprint"]["teacher"]
    replaced = {r: store for r in roles if parts[r] is source or
                (parts[r] is not None and model_digest(parts[r]) == digest)}
    say(f"teacher store {store.folder}: read for {', '.join(replaced)} instead of running the teacher")
    return {**parts, **replaced}


def wrap_model(world: Dist, model: nn.Module, teacher, enc_cfg, state, inhibition: bool = False):
    """(teacher on the device, projection, Outputs wrapper with a resumed state loaded, runner);
    `teacher` may be a `quant.train.store.TeacherStore`, which answers on any device; `inhibition`:
    the wrapper also returns the student's Z per layer (score distillation)."""
    if isinstance(teacher, nn.Module):
        teacher = teacher.to(world.device).eval().requires_grad_(False)
    full = teacher is not None
    proj = HiddenProjection(enc_cfg.hidden, teacher.cfg.hidden, enc_cfg.layers + 1) if full else None
    wrapped = Outputs(model, full, proj, inhibition).to(world.device)
    if state is not None:
        wrapped.load_state_dict(state["model"])
    runner = wrapped
    if world.world > 1:
        runner = nn.parallel.DistributedDataParallel(wrapped, device_ids=[world.device.index]
                                                     if world.device.type == "cuda" else None)
    return teacher, proj, wrapped, runner


class Outputs(nn.Module):
    """forward -> (logits, hidden_states, contexts, inhibition), so that DDP sees every use of the
    parameters; `inhibition`: each block's Z from its input (`InhibitorAttention.inhibition`) when
    asked for (score distillation), else ()."""

    def __init__(self, model: nn.Module, full: bool, proj: HiddenProjection | None, inhibition: bool = False):
        super().__init__()
        self.model, self.full, self.proj, self.inhibition = model, full, proj, inhibition

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        if not self.full:
            return self.model(input_ids, attention_mask), (), (), ()
        logits, out = self.model.forward_all(input_ids, attention_mask)
        z = ()
        if self.inhibition:
            mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
            z = tuple(block.attn.inhibition(x, mask) for block, x in zip(self.model.encoder.blocks, out.hidden_states))
        return logits, tuple(out.hidden_states), tuple(out.contexts), z


def quantize(cfg: TrainConfig, model: nn.Module, data, device):
    from quant.qat.model import calibrate, quantize_model
    qcfg = cfg.width_setting().quant_config()
    qmodel = quantize_model(model, qcfg).to(device)
    n = len(data["labels"])
    batches = [take(data, range(i, min(i + cfg.batch_size, n)), device)
               for i in range(0, min(n, cfg.calib_batches * cfg.batch_size), cfg.batch_size)]
    calibrate(qmodel, [{k: b[k] for k in ("input_ids", "attention_mask")} for b in batches])
    return qmodel, qcfg


# ---------------------------------------------------------------- evaluation

@torch.no_grad()
def predict(model: nn.Module, data, batch_size: int, device) -> torch.Tensor:
    """Logits of `model` (eval mode) on every example of `data`, in data order. Examples run shortest
    first, so each batch (`take` trims it to its longest example) carries little padding. Padded
    positions never reach a valid one, so the logits are those of any other batching (exactly so for
    a quantized model: integer ops and exact accumulations; tests/test_train.py)."""
    was_training = model.training
    model.eval()
    n = len(data["labels"])
    order = torch.argsort(data["attention_mask"].sum(1), stable=True)
    logits = torch.cat([model(**{k: v for k, v in take(data, order[i:i + batch_size], device).items()
                                 if k != "labels"}).float().cpu() for i in range(0, n, batch_size)])
    model.train(was_training)
    return torch.empty_like(logits).index_copy_(0, order, logits)


def evaluate(model: nn.Module, spec, data, batch_size: int, device) -> dict[str, float]:
    """The task's metrics of `model` on `data` (`predict`)."""
    from quant.data.metrics import compute_metrics
    logits = predict(model, data, batch_size, device)
    return {k: float(v) for k, v in compute_metrics(spec, logits, data["labels"]).items()}


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
              "bits": None if cfg.float_model else cfg.bits,
              "widths": None if cfg.float_model else cfg.width_setting().name, "distill": cfg.distill.mode,
              "best_epoch": meta["best"]["epoch"], "main_metric": spec.main_metric,
              "train_seconds": round(seconds, 1), "history": meta["history"], "config": cfg.to_dict()}
    for split in data:
        if split == eval_split:  # measured on this very model when it became the best (tests check equality)
            result[split] = meta["best"]["metrics"]
        elif split != "train":
            result[split] = evaluate(best, spec, data[split], cfg.eval_batch_size, device)
    write_text_atomic(Path(cfg.out) / "metrics.json", json.dumps(result, indent=2) + "\n")
    return result
