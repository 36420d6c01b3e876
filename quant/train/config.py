"""The training settings: `TrainConfig` and its `DistillConfig`, each default and help text once, on the field.

`hwsim train` is generated from these fields (`quant.train.cli`): a flag `--field-name` per field
(`flag` in the field's metadata renames it), its type and default from the field, its help from the
field's `help`; nested dataclasses contribute their fields' flags. A field without help text is an
error there (and a failing test), so a new setting comes with its documentation. Torch-free, so that
`hwsim --help` stays fast; `quant.train.loop` and `quant.train.distill` use them.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import MISSING, dataclass
from typing import Any

from models import variants
from models.config import ACTIVATIONS
from models.errors import UserError
from models.settings import LATER
from models.variants import InhibitorOptions
from quant.qat.config import MAX_BITS, MIN_BITS
from quant.qat.widths import WIDTHS, WidthSetting, uniform, width_setting

DISTILL_MODES = ("task", "agnostic", "none")
HIDDEN_LOSSES = ("cosine", "mse")
HIDDEN_LAYERS = ("all", "last")


def opt(default: Any = MISSING, *, help: str, factory: Any = MISSING, later: bool = False, **cli: Any) -> Any:
    """A config field with its help text; `cli` adds `flag` (the option's name, default `--field-name`)
    or `choices` for the generated command line. `later`: added after cached stages and ledger records
    existed, its default the behaviour before; fingerprints leave it out at its default
    (`models.settings.hashed`)."""
    return dataclasses.field(default=default, default_factory=factory,
                             metadata={"help": help, **({LATER: True} if later else {}), **cli})


@dataclass(frozen=True)
class DistillConfig:
    mode: str = opt("task", flag="--distill", choices=DISTILL_MODES,
                    help="loss: task (KL + CE + hidden + contexts), agnostic (hidden + contexts, no labels), "
                         "none (CE only)")
    temperature: float = opt(2.0, help="distillation temperature")
    alpha_kl: float = opt(1.0, help="weight of the KL loss on the teacher's logits (MSE for regression)")
    alpha_ce: float = opt(1.0, help="weight of the cross-entropy on the labels")
    alpha_hidden: float = opt(1.0, help="weight of the hidden-state loss")
    alpha_context: float = opt(1.0, help="weight of the attention-context loss (task: equal widths only; "
                                         "agnostic; 0: off)")
    hidden_loss: str = opt("cosine", choices=HIDDEN_LOSSES, help="distance of student and teacher hidden states")
    hidden_layers: str = opt("all", choices=HIDDEN_LAYERS, later=True,
                             help="hidden states aligned: every aligned layer's, or the last layer's only (the "
                                  "InhibiDistilbert paper's)")
    score_weight: float = opt(0.0, flag="--score-distill", later=True,
                              help="W: weight of score distillation, the KL between the teacher's attention "
                                   "probabilities softmax(QK^T/sqrt(d)) and an inhibitor student's softmax(-Z/tau) "
                                   "per head, in the layer-by-layer init and in training (float inhibitor students "
                                   "only; 0: off)")
    score_temperature: float = opt(1.0, later=True,
                                   help="tau of score distillation: the student's probabilities are softmax(-Z/tau), "
                                        "Z the inhibition in the values' units")


@dataclass(frozen=True)
class TrainConfig:
    out: str = opt(help="run folder (best checkpoint, metrics.json, checkpoints/)")
    task: str = opt("rt", help="task name (rt, sst2, mrpc, ...; `hwsim data TASK` shows one)")
    attention: str = opt("dot", help="the attention variant: a name in models.variants (dot, inhibitor, "
                                     "symmetric)")
    teacher: str = opt("minilm", help="'minilm' or a folder: a Hugging Face BERT/DistilBERT folder, or a run of "
                                      "`hwsim train --float` (needed for distillation)")
    float_model: bool = opt(False, flag="--float",
                            help="train a float classifier (no quantization; cross-entropy unless --distill)")
    bits: int = opt(8, help="weight and activation bits of the QAT student (WNAN, attention at N too; 4..16)")
    widths: str | None = opt(None, choices=tuple(WIDTHS), later=True,
                             help="a named width setting of the QAT student instead of --bits (quant.qat.widths: "
                                  "Linear weights and activations, attention's q/k/v/context and probabilities "
                                  "apart, e.g. w8a8-att4)")
    distill: DistillConfig = opt(factory=DistillConfig, help="the loss (the flags of DistillConfig)")
    epochs: int = opt(1, help="passes over the training split")
    batch_size: int = opt(32, help="training batch size, per process")
    eval_batch_size: int = opt(128, help="evaluation batch size")
    lr: float = opt(5e-5, help="peak learning rate (AdamW)")
    weight_decay: float = opt(0.01, help="AdamW weight decay")
    warmup: float = opt(0.1, help="warm-up fraction of all steps")
    max_grad_norm: float = opt(1.0, help="gradient clipping: largest norm of the gradients (0: no clipping)")
    max_length: int = opt(64, help="tokens per example (truncation)")
    limit: int | None = opt(None, help="use the first N examples of each split")
    train_limit: int | None = opt(None, help="use the first N training examples (validation and test stay whole)")
    data_dir: str | None = opt(None, help="local data folder (GLUE TSV root, or rt corpus)")
    seed: int = opt(0, help="seed of initialisation, shuffling and dropout")
    save_every: int = opt(0, help="training checkpoint every N steps (0: none)")
    resume: bool = opt(False, help="continue from the latest training checkpoint in --out")
    init_student: str | None = opt(None, help="float checkpoint folder to start the student from")
    layer_init_steps: int = opt(0, help="layer-by-layer init: training batches (as the sampler orders them) "
                                        "fitting every layer's q/k/v and scalars to the teacher's contexts "
                                        "(-1: one pass; 0: none)")
    layer_init_lr: float = opt(1e-4, help="q/k/v rate of the layer-by-layer init (and the first rate of the block stage)")
    block_init_steps: int = opt(0, later=True,
                                help="whole-block stage after the layer-by-layer init: training batches fitting "
                                     "every student block (attention, FFN, LayerNorms) to map the teacher's hidden "
                                     "state l to its state l+1, at --layer-init-lr decaying linearly to 0 "
                                     "(-1: one pass; 0: none)")
    scalar_lr: float = opt(1e-3, help="learning rate of the inhibitor's scalars (gamma, beta, alpha) in init "
                                      "and training")
    student_activation: str = opt("relu", choices=ACTIVATIONS,
                                  help="FFN activation of a student built from the teacher (relu: the one it is "
                                       "quantized with)")
    transfer_copies: int = opt(0, help="rt: augmented copies per training snippet, labelled by the teacher "
                                       "(needs --distill)")
    transfer_plots: bool = opt(False, help="rt: add the plot summaries of training movies, labelled by the teacher")
    calib_batches: int = opt(4, help="training batches the quantizers and the inhibitor calibration are fitted on")
    group_window: int = opt(50, help="batches per window sorted by length before batching, for little padding "
                                     "(training, layer-by-layer init, inhibitor calibration; 0: random batches)")
    # a student built from a dot-product model's weights
    inhibitor: InhibitorOptions = opt(factory=InhibitorOptions,
                                      help="an inhibitor student's options (the flags of InhibitorOptions)")
    calibrate: bool = opt(True, flag="--calibrate-inhibitor",
                          help="before training, fit the student's own scalars per layer to the attention "
                               "contexts of the dot product model it is built from (a variant with a calibration: "
                               "the inhibitor's gamma, alpha and beta)")
    teacher_store: str | None = opt(None, help="compute the teacher's outputs on the training data once into DIR (a "
                                         "store per teacher, data and --max-length) and read them instead of "
                                         "running the teacher")

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "eval_batch_size", "max_length", "calib_batches")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 <= self.warmup < 1:
            raise UserError(f"need lr > 0 and 0 <= warmup < 1, got lr={self.lr}, warmup={self.warmup}")
        if self.save_every < 0 or self.layer_init_steps < -1 or self.transfer_copies < 0 or self.group_window < 0:
            raise UserError("--save-every, --transfer-copies and --group-window must be >= 0, --layer-init-steps >= -1")
        if self.block_init_steps < -1:
            raise UserError(f"--block-init-steps must be >= -1 (-1: one pass; 0: none), got {self.block_init_steps}")
        if self.layer_init_lr <= 0 or self.scalar_lr <= 0:
            raise UserError(f"need --layer-init-lr > 0 and --scalar-lr > 0, got {self.layer_init_lr}, {self.scalar_lr}")
        if self.student_activation not in ACTIVATIONS:
            raise UserError(f"unknown --student-activation {self.student_activation!r}: use one of {', '.join(ACTIVATIONS)}")
        if (self.transfer_copies or self.transfer_plots) and (self.distill.mode == "none" or self.task != "rt"):
            raise UserError("a transfer set is labelled by the teacher: it needs --distill task|agnostic and --task rt")
        if not MIN_BITS <= self.bits <= MAX_BITS:
            raise UserError(f"--bits {self.bits} is not a width the hardware holds: use {MIN_BITS}..{MAX_BITS} "
                            f"(or --widths NAME: {', '.join(WIDTHS)})")
        if self.widths is not None:
            width_setting(self.widths)  # UserError naming the settings
            if self.bits != 8:  # --bits left at its default
                raise UserError(f"give --widths {self.widths} or --bits {self.bits}, not both")
        if self.distill.mode not in DISTILL_MODES:
            raise UserError(f"unknown --distill {self.distill.mode!r}: use one of {', '.join(DISTILL_MODES)}")
        if self.distill.hidden_layers not in HIDDEN_LAYERS:
            raise UserError(f"unknown --hidden-layers {self.distill.hidden_layers!r}: use one of {', '.join(HIDDEN_LAYERS)}")
        if self.distill.score_weight < 0 or self.distill.score_temperature <= 0:
            raise UserError(f"need --score-distill >= 0 and --score-temperature > 0, got "
                            f"{self.distill.score_weight}, {self.distill.score_temperature}")
        if self.distill.score_weight and (self.distill.mode == "none" or not self.float_model):
            raise UserError("--score-distill teaches a float student the teacher's attention probabilities: it "
                            "needs --float and --distill task|agnostic (a QAT student starts from such a student "
                            "through --init-student)")
        if self.distill.hidden_loss not in HIDDEN_LOSSES:
            raise UserError(f"unknown hidden loss {self.distill.hidden_loss!r}: use one of {', '.join(HIDDEN_LOSSES)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def width_setting(self) -> WidthSetting:
        """The QAT student's widths: `--widths NAME`, else W`bits`A`bits` (`quant.qat.widths.uniform`)."""
        return uniform(self.bits) if self.widths is None else width_setting(self.widths)

    def attention_options(self) -> Any:
        """The options of a student of `attention`: the field holding that variant's options dataclass,
        its defaults when no field does."""
        options = variants.get(self.attention).options
        hints = typing.get_type_hints(type(self))
        held = [getattr(self, f.name) for f in dataclasses.fields(self) if hints[f.name] is options]
        return held[0] if held else options()
