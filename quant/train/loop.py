"""The training loop: float fine-tuning, or quantization-aware training with distillation.

One frozen `TrainConfig` (`quant.train.config`) drives `train(cfg)`:
- float (`float_model=True`): the teacher itself (attention 'dot', cross-entropy), or a student built
  from the teacher's weights (another attention, or the same with the ReLU it will be quantized with),
  optionally calibrated and fitted layer by layer to the teacher's attention contexts, then trained
  with cross-entropy or the distillation loss of `quant.train.distill`;
- QAT: a float student (`init_student`, else the fine-tuned teacher's weights under `attention`),
  optionally fitted layer by layer to the teacher's attention contexts, then `quantize_model` +
  `calibrate`, then trained with the loss of `quant.train.distill` against the float teacher.
AdamW (no decay on biases and LayerNorm), linear warm-up then linear decay to 0, gradient clipping,
evaluation on validation after each epoch, best checkpoint by the task's main metric in `out`.

Determinism and resume: the batches of epoch e are those of `quant.train.sampler` seeded with
(seed, e) (length-grouped inside windows of `group_window` batches; 0: random batches), so the
position in the data is the step within the epoch; dropout draws from the torch RNG, seeded per
rank before the first step and saved in every training checkpoint, so a resumed run repeats the
uninterrupted one step for step.
Under `torchrun` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel (gloo on CPU,
nccl on CUDA); only rank 0 evaluates, writes files and shows the progress bar.

`train` = resume check -> `_prepare` (data, `build`, student initialisation, quantization, wrappers)
-> optimizer and `restore` -> per epoch `_train_epoch` (`_train_step`, training checkpoints) and
`_end_epoch` (evaluation, best checkpoint) -> `_finish` (metrics.json). The pieces around the loop
live in `quant.train.runtime`; the optimizer and the saved training state in `quant.train.state`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from models.errors import UserError
from quant.train import checkpoint as ckpt
from quant.train.config import TrainConfig
from quant.train.distill import HiddenProjection, distill_loss
from quant.train.runtime import (Dist, add_transfer_set, evaluate, final_metrics, initialise_student, length_sampler,
                                 load_data, quantize, setup_distributed, take, use_teacher_store, wrap_model)
from quant.train.sampler import LengthGroupedSampler
from quant.train.state import make_optimizer, restore, resume_state, save_training_state



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
    names (`Attention.from_dot_state`: symmetric attention is eigen-initialised from the teacher's
    queries and keys; parameters new to the variant keep their initial values). `overrides` are
    further `EncoderConfig` fields (the variant's options, the FFN activation)."""
    from models.attention import attention_class
    from models.encoder import SequenceClassifier
    cfg = teacher.cfg.replace(attention=attention, **overrides)
    student = SequenceClassifier(cfg)
    state = attention_class(attention).from_dot_state(teacher.state_dict(), heads=teacher.cfg.heads)
    own = student.state_dict()
    student.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return student, cfg


def _is_fine_tuned(folder: Path) -> bool:
    return "encoder_config" in _read_json(folder / "config.json")


def build(cfg: TrainConfig, spec) -> dict[str, Any]:
    """The float model to train (before quantization), its config, the distillation teacher (or
    None), the teacher for the layer-by-layer initialisation (or None), and the calibration of a student
    just built from a dot-product model with the model it fits to (`calibration`, `calib_teacher`: the
    variant's calibration facet, or both None), and the teacher's attention logits under score
    distillation (`scores`: a `quant.train.distill.TeacherScores`, else None).

    A *student* is a model made for another attention than the one it starts from, or a float model
    trained by distillation; it is built (`student_from`) with `cfg.student_activation`, the FFN
    activation it will be quantized with (ReLU), so that quantization-aware training does not have to
    recover an activation change on top of quantization, and with the variant's options in `cfg`
    (`TrainConfig.attention_options`). The teacher keeps its own (GELU)."""
    from models import variants
    from models.loading import load_pretrained
    from models.teacher import resolve_teacher
    source = resolve_teacher(cfg.teacher)
    distilled = cfg.distill.mode != "none"
    teacher = load_fine_tuned(str(source), "--teacher")[0] if distilled else None
    init_teacher = teacher
    if init_teacher is None and (cfg.layer_init_steps or cfg.block_init_steps):
        init_teacher = (load_fine_tuned(str(source), "--teacher")[0] if _is_fine_tuned(source)
                        else load_pretrained(source, num_labels=spec.num_labels))
    if cfg.init_student:
        model, enc_cfg = load_fine_tuned(cfg.init_student, "--init-student")
    elif _is_fine_tuned(source):
        model, enc_cfg = load_fine_tuned(str(source), "--teacher")
    else:
        # as written (dot-product attention); `student_from` below converts it, so a Hugging Face
        # teacher gets the same options and calibration as a fine-tuned one
        model = load_pretrained(source, num_labels=spec.num_labels)
        enc_cfg = model.cfg
    calibration = calib_teacher = None
    other_variant = enc_cfg.attention != cfg.attention
    if other_variant or (cfg.float_model and distilled and enc_cfg.activation != cfg.student_activation):
        variant = variants.get(cfg.attention)
        if other_variant and cfg.calibrate and enc_cfg.attention == variants.baseline():
            calibration = variant.facet("calibration")
            calib_teacher = model if calibration is not None else None
        model, enc_cfg = student_from(model, cfg.attention, activation=cfg.student_activation,
                                      attention_options=cfg.attention_options())
    scores = None
    if cfg.distill.score_weight:  # from the teacher model, before a store takes its place
        from quant.train.distill import TeacherScores
        scores = TeacherScores(teacher, enc_cfg.layers, enc_cfg.heads)
    return {"model": model.train(), "enc_cfg": enc_cfg, "teacher": teacher, "init_teacher": init_teacher,
            "calibration": calibration, "calib_teacher": calib_teacher, "scores": scores}


# ---------------------------------------------------------------- setting up a run

@dataclass(frozen=True)
class Run:
    """Everything the loop reads; `model` is the trained classifier, `wrapped` it with the hidden
    projection (what a training checkpoint holds), `runner` that under DDP when distributed; `teacher`
    the distillation teacher, or its `quant.train.store.TeacherStore` (None: no distillation)."""
    cfg: TrainConfig
    world: Dist
    spec: Any
    tokenizer: Any
    data: dict[str, dict[str, torch.Tensor]]
    eval_split: str
    enc_cfg: Any
    qcfg: Any
    model: nn.Module
    teacher: Any
    scores: Any  # the teacher's attention logits (`quant.train.distill.TeacherScores`) under score distillation
    proj: HiddenProjection | None
    wrapped: nn.Module
    runner: nn.Module
    sampler: LengthGroupedSampler
    per_epoch: int


def _say(world: Dist):
    return tqdm.write if world.main else (lambda *a, **k: None)


def _prepare(cfg: TrainConfig, world: Dist, spec, state) -> Run:
    """Data, the student (initialised, quantized), the teacher, the wrappers and the sampler, in the
    order that fixes the torch RNG draws of a fresh run."""
    from models.loading import load_tokenizer
    from models.teacher import resolve_teacher
    tokenizer = load_tokenizer(resolve_teacher(cfg.teacher) if not cfg.init_student else cfg.init_student)
    data = load_data(cfg, spec, tokenizer)
    parts = build(cfg, spec)
    if cfg.transfer_copies or cfg.transfer_plots:
        data["train"] = add_transfer_set(cfg, data["train"], tokenizer, parts["teacher"], _say(world))
    if cfg.teacher_store:
        parts = use_teacher_store(cfg, parts, data["train"], world, _say(world))
    if state is None:
        initialise_student(cfg, parts, data["train"], _say(world), world.main)
    model, qcfg = parts["model"].to(world.device), None
    if not cfg.float_model:
        model, qcfg = quantize(cfg, model, data["train"], world.device)
    scores = parts["scores"].to(world.device) if parts["scores"] is not None else None
    teacher, proj, wrapped, runner = wrap_model(world, model, parts["teacher"], parts["enc_cfg"], state,
                                                scores is not None)
    sampler = length_sampler(cfg, data["train"], cfg.seed, world.world, world.rank)
    return Run(cfg, world, spec, tokenizer, data, "validation" if "validation" in data else "test",
               parts["enc_cfg"], qcfg, model, teacher, scores, proj, wrapped, runner, sampler,
               len(sampler))


# ---------------------------------------------------------------- the loop

def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run the training that `cfg` describes; returns the final metrics (rank 0; {} elsewhere)."""
    from quant.data.tasks import get_task
    check_score_distill(cfg)
    world = setup_distributed()
    torch.manual_seed(cfg.seed)
    spec = get_task(cfg.task)
    saved = resume_state(cfg)
    if world.main:
        ckpt.remove_partial_files(cfg.out)  # left by a run killed while writing
    run = _prepare(cfg, world, spec, saved)
    total = run.per_epoch * cfg.epochs
    opt, sched = make_optimizer(cfg, run.runner, total)
    meta, step = restore(cfg, world.rank, saved, opt, sched)
    if saved is not None:
        _say(world)(f"resumed from step {step} of {total}")
    bar = tqdm(total=total, initial=step, disable=not world.main, desc=f"train {cfg.task}", dynamic_ncols=True)
    start = time.perf_counter()
    run.runner.train()
    for epoch in range(meta["epochs_done"], cfg.epochs):  # a checkpoint may precede its epoch's evaluation
        step = _train_epoch(run, epoch, step, meta, (opt, sched), bar)
        _end_epoch(run, epoch, step, meta)
    bar.close()
    return _finish(run, meta, time.perf_counter() - start)


def check_score_distill(cfg: TrainConfig) -> None:
    """UserError when `--score-distill` is set for a student whose attention has no inhibition Z
    (`inhibition`): dot and symmetric students are softmax attention already (a dot student starts
    from the teacher's very queries and keys, a symmetric one from their best symmetric fit)."""
    from models.attention import attention_class
    if cfg.distill.score_weight and not callable(getattr(attention_class(cfg.attention), "inhibition", None)):
        raise UserError(f"--score-distill aligns an inhibitor's softmax(-Z/tau) with the teacher's attention "
                        f"probabilities; {cfg.attention!r} attention has no inhibition Z: drop --score-distill "
                        f"or use --attention inhibitor")


def _train_epoch(run: Run, epoch: int, step: int, meta: dict[str, Any], optim, bar) -> int:
    """The rest of epoch `epoch` from global step `step`; returns the step reached."""
    cfg = run.cfg
    for idx in run.sampler.batches(epoch)[step - epoch * run.per_epoch:]:
        named = _train_step(run, take(run.data["train"], idx, run.world.device), *optim)
        step += 1
        running = meta["running"]  # moving averages of the loss parts, saved with the state
        meta["running"] = {k: v if k not in running else 0.98 * running[k] + 0.02 * v for k, v in named.items()}
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in meta["running"].items()}, refresh=False)
        if cfg.save_every and step % cfg.save_every == 0:
            save_training_state(cfg.out, run.world, step, run.wrapped, *optim, meta)
    return step


def _train_step(run: Run, batch: dict[str, torch.Tensor], opt, sched) -> dict[str, float]:
    """One optimizer step on `batch`; the named loss parts."""
    *student, inhibition = run.runner(batch["input_ids"], batch["attention_mask"])
    target = scores = None
    if run.teacher is not None:
        with torch.no_grad():
            t_logits, t_out = run.teacher.forward_all(batch["input_ids"], batch["attention_mask"])
        target = (t_logits, t_out.hidden_states, t_out.contexts)
        if run.scores is not None:
            scores = (inhibition, run.scores(t_out.hidden_states))
    loss, named = distill_loss(run.cfg.distill, batch["attention_mask"], batch["labels"], tuple(student), target,
                               run.proj, scores)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if run.cfg.max_grad_norm:
        nn.utils.clip_grad_norm_(run.runner.parameters(), run.cfg.max_grad_norm)
    opt.step()
    sched.step()
    return named


def _end_epoch(run: Run, epoch: int, step: int, meta: dict[str, Any]) -> None:
    """Rank 0 evaluates and keeps the best checkpoint; every rank marks the epoch done."""
    if run.world.main:
        metrics = evaluate(run.model, run.spec, run.data[run.eval_split], run.cfg.eval_batch_size, run.world.device)
        meta["history"].append({"epoch": epoch, "step": step, "loss": dict(meta["running"]), run.eval_split: metrics})
        _say(run.world)(f"epoch {epoch}: {run.eval_split} {metrics}")
        value = metrics[run.spec.main_metric]
        if meta["best"] is None or value > meta["best"]["value"]:
            meta["best"] = {"value": value, "epoch": epoch, "metrics": metrics}
            _save_best(run, metrics, epoch)
    meta["epochs_done"] = epoch + 1
    if run.world.world > 1:
        dist.barrier()


def _save_best(run: Run, metrics: dict[str, float], epoch: int) -> None:
    cfg = run.cfg
    extra = {"validation": metrics, "epoch": epoch, "train_config": cfg.to_dict()}
    if cfg.float_model:
        from models.loading import save_checkpoint
        save_checkpoint(run.model, run.enc_cfg, cfg.out, run.tokenizer, extra)
    else:
        ckpt.save_quant_run(run.model, run.enc_cfg, run.qcfg, cfg.out, run.tokenizer, extra)


def _finish(run: Run, meta: dict[str, Any], seconds: float) -> dict[str, Any]:
    """metrics.json on rank 0; leave the process group."""
    result: dict[str, Any] = {}
    if run.world.main:
        result = final_metrics(run.cfg, run.spec, run.data, meta, seconds, run.world.device, run.eval_split)
    if run.world.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result
