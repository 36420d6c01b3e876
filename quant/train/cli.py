"""`hwsim train`: fine-tune a float classifier, or quantization-aware-train a distilled student.

Examples:
  hwsim train --task rt --attention dot --teacher minilm --float --out runs/teacher
  hwsim train --task rt --attention inhibitor --teacher runs/teacher --float --distill task \
      --layer-init-steps -1 --out runs/inh
  hwsim train --task rt --attention inhibitor --teacher runs/teacher --init-student runs/inh --bits 8 --out runs/inh8
  torchrun --nproc_per_node=2 -m hwsim.cli train ...   (DistributedDataParallel)
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", default="rt", help="task name (rt, sst2, mrpc, ...; `hwsim data TASK` shows one)")
    parser.add_argument("--attention", default="dot", help="dot | inhibitor | symmetric")
    parser.add_argument("--teacher", default="minilm",
                        help="'minilm' or a folder: a Hugging Face BERT/DistilBERT folder, or a run of "
                             "`hwsim train --float` (needed for distillation)")
    parser.add_argument("--float", dest="float_model", action="store_true",
                        help="train a float classifier (no quantization; cross-entropy unless --distill)")
    parser.add_argument("--bits", type=int, default=8, help="weight and activation bits of the QAT student")
    parser.add_argument("--distill", choices=("task", "agnostic", "none"), default=None,
                        help="loss: task (KL + CE + hidden + contexts), agnostic (hidden + contexts, no "
                             "labels), none (CE only); default task, and none with --float")
    parser.add_argument("--epochs", type=int, default=1, help="passes over the training split")
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (AdamW)")
    parser.add_argument("--warmup", type=float, default=0.1, help="warm-up fraction of all steps")
    parser.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per example (truncation)")
    parser.add_argument("--limit", type=int, default=None, help="use the first N examples of each split")
    parser.add_argument("--train-limit", type=int, default=None,
                        help="use the first N training examples (validation and test stay whole)")
    parser.add_argument("--data-dir", default=None, help="local data folder (GLUE TSV root, or rt corpus)")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and dropout")
    parser.add_argument("--save-every", type=int, default=0, help="training checkpoint every N steps (0: none)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest training checkpoint in --out")
    parser.add_argument("--init-student", default=None, help="float checkpoint folder to start the student from")
    parser.add_argument("--layer-init-steps", type=int, default=0,
                        help="layer-by-layer init: training batches fitting every "
                             "layer's q/k/v and scalars to the teacher's contexts (-1: one pass; 0: none)")
    parser.add_argument("--layer-init-lr", type=float, default=1e-4, help="q/k/v rate of the layer-by-layer init")
    parser.add_argument("--scalar-lr", type=float, default=1e-3,
                        help="learning rate of the inhibitor's scalars (gamma, beta, alpha) in init and training")
    parser.add_argument("--student-activation", choices=("relu", "gelu"), default="relu",
                        help="FFN activation of a student built from the teacher (relu: the one it is "
                             "quantized with)")
    parser.add_argument("--transfer-copies", type=int, default=0,
                        help="rt: augmented copies per training snippet, labelled by the teacher (needs --distill)")
    parser.add_argument("--transfer-plots", action="store_true",
                        help="rt: add the plot summaries of training movies, labelled by the teacher")
    parser.add_argument("--inhibitor-center", action=argparse.BooleanOptionalAction, default=True,
                        help="inhibitor student: subtract the mean score over keys")
    parser.add_argument("--inhibitor-signed", action=argparse.BooleanOptionalAction, default=True,
                        help="inhibitor student: signed inhibition (off drops negative values)")
    parser.add_argument("--inhibitor-alpha", type=float, default=0.5,
                        help="inhibitor student: initial score shift alpha (<= 0 disables it)")
    parser.add_argument("--calibrate-inhibitor", action=argparse.BooleanOptionalAction, default=True,
                        help="fit the inhibitor student's gamma and beta per layer to the dot-product "
                             "model's attention contexts before training")
    parser.add_argument("--group-window", type=int, default=50,
                        help="batches per window sorted by length before batching, for little padding "
                             "(training, layer-by-layer init, inhibitor calibration; 0: random batches)")
    parser.add_argument("--teacher-store", default=None, metavar="DIR",
                        help="compute the teacher's outputs on the training data once into DIR (a store per "
                             "teacher, data and --max-length) and read them instead of running the teacher")
    parser.add_argument("--temperature", type=float, default=2.0, help="distillation temperature")
    parser.add_argument("--alpha-kl", type=float, default=1.0, help="weight of the KL loss on the teacher's logits (MSE for regression)")
    parser.add_argument("--alpha-ce", type=float, default=1.0, help="weight of the cross-entropy on the labels")
    parser.add_argument("--alpha-hidden", type=float, default=1.0, help="weight of the hidden-state loss")
    parser.add_argument("--alpha-context", type=float, default=1.0, help="weight of the attention-context loss (agnostic only)")
    parser.add_argument("--hidden-loss", choices=("cosine", "mse"), default="cosine",
                        help="distance of student and teacher hidden states")
    parser.add_argument("--out", required=True, help="run folder (best checkpoint, metrics.json, checkpoints/)")


def needs_hub(args: argparse.Namespace) -> bool:
    """Whether this command would read its data from the Hugging Face hub."""
    from quant.data.tasks import needs_hub as task_needs_hub
    return task_needs_hub(args.task, args.data_dir)


def config_from_args(args: argparse.Namespace):
    from quant.train.distill import DistillConfig
    from quant.train.loop import TrainConfig
    mode = args.distill or ("none" if args.float_model else "task")
    distill = DistillConfig(mode=mode, temperature=args.temperature, alpha_kl=args.alpha_kl,
                            alpha_ce=args.alpha_ce, alpha_hidden=args.alpha_hidden,
                            alpha_context=args.alpha_context, hidden_loss=args.hidden_loss)
    return TrainConfig(out=args.out, task=args.task, attention=args.attention, teacher=args.teacher,
                       float_model=args.float_model, bits=args.bits, distill=distill, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                       weight_decay=args.weight_decay, max_length=args.max_length, limit=args.limit,
                       train_limit=args.train_limit,
                       data_dir=args.data_dir, seed=args.seed, save_every=args.save_every,
                       resume=args.resume, init_student=args.init_student,
                       layer_init_steps=args.layer_init_steps, layer_init_lr=args.layer_init_lr,
                       scalar_lr=args.scalar_lr, student_activation=args.student_activation,
                       transfer_copies=args.transfer_copies, transfer_plots=args.transfer_plots,
                       inhibitor_center=args.inhibitor_center, inhibitor_signed=args.inhibitor_signed,
                       alpha_init=args.inhibitor_alpha, calibrate_inhibitor=args.calibrate_inhibitor,
                       group_window=args.group_window, teacher_store=args.teacher_store)


def run(args: argparse.Namespace) -> int:
    from models.attention import ATTENTIONS
    from models.errors import UserError
    from quant.data.tasks import get_task
    from quant.train.loop import train

    get_task(args.task)  # unknown task: UserError before anything is loaded
    if args.attention not in ATTENTIONS:
        raise UserError(f"unknown attention {args.attention!r}: use one of {', '.join(sorted(ATTENTIONS))}")
    result = train(config_from_args(args))
    if result:
        shown = {s: result[s] for s in ("validation", "test") if s in result}
        print(f"best epoch {result['best_epoch']}: " + "; ".join(
            f"{s} " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()) for s, m in shown.items()))
        print(f"wrote {args.out}/metrics.json")
    return 0
