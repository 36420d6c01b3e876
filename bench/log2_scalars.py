"""How far the quantized inhibitor's log2 scalars move in one QAT epoch, at their linear rate and under
`--inhibitor-scalars log` (`quant.train.state.rounded_lr`).

One float inhibitor student (`--init-student`, a run of `hwsim train --float --attention inhibitor`)
is quantization-aware trained twice for one epoch, the same in everything but the log2 scalars' rate:
as it is (linear: `scalar_lr`), and converted to the log parametrisation (gamma, beta -> log_gamma,
log_beta; the same function to float32 rounding), whose QAT twin trains them at
max(scalar_lr, 2 / steps of the epoch). Both start at the integers `quant_state` rounds them to.
Printed per run: the rate, the largest and mean |log2 scalar - its start| over layers, and how many of
them crossed a rounding boundary (their integer changed).

    python bench/log2_scalars.py --init-student RUN --teacher TEACHER [--task rt] [--limit 160]
                                 [--batch-size 16] [--max-length 48] [--data-dir DIR]
`--limit N`: the first N examples of every split (training: N / batch-size steps; evaluation too).
Without --init-student: a tiny random BERT teacher and synthetic SST-2 (the tests' setup) in a
temporary folder, a float inhibitor student distilled from it first.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
from pathlib import Path

import torch

from models.loading import load_checkpoint, load_tokenizer, save_checkpoint
from models.variants import InhibitorOptions
from quant.train.checkpoint import load_quant_run
from quant.train.config import DistillConfig, TrainConfig
from quant.train.loop import train
from quant.train.state import rounded_lr


def as_log(run: Path, out: Path) -> Path:
    """The float inhibitor run `run` under the log parametrisation, written to `out`."""
    model, cfg = load_checkpoint(run)
    log_cfg = cfg.replace(attention_options=dataclasses.replace(cfg.attention_options, scalars="log"))
    state = {}
    for name, value in model.state_dict().items():
        head, _, leaf = name.rpartition(".")
        if head.endswith(".attn") and leaf in ("gamma", "beta"):
            name, value = f"{head}.log_{leaf}", value.log()
        state[name] = value
    twin = type(model)(log_cfg)
    twin.load_state_dict(state, strict=True)
    return save_checkpoint(twin, log_cfg, out, load_tokenizer(run))


def start_of(run: Path) -> list[tuple[float, float]]:
    """(log2 gamma/sqrt(d), log2 beta) rounded half up per layer: where QAT starts them."""
    model, cfg = load_checkpoint(run)
    return [tuple(math.floor(math.log2(v.item() / s) + 0.5) for v, s in
                  ((b.attn.gamma, math.sqrt(cfg.head_dim)), (b.attn.beta, 1.0))) for b in model.encoder.blocks]


def tiny_setup(folder: Path) -> tuple[Path, Path, dict]:
    """(teacher run, float inhibitor run, TrainConfig fields) on the tests' tiny BERT and synthetic SST-2."""
    from tests.test_train import POSITIVE, WORDS  # noqa: F401 (the tests' vocabulary)
    from transformers import BertConfig, BertModel, BertTokenizerFast
    hf = folder / "hf"
    hf.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (hf / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(hf / "vocab.txt")).save_pretrained(hf)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=48, max_position_embeddings=32, pad_token_id=0)).save_pretrained(hf)
    data = folder / "glue"
    (data / "SST-2").mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    for name, n in (("train.tsv", 256), ("dev.tsv", 24)):
        rows = ["sentence\tlabel"]
        for _ in range(n):
            k = int(torch.randint(3, 9, (1,), generator=gen))
            words = [WORDS[int(i)] for i in torch.randint(len(WORDS), (k,), generator=gen)]
            rows.append(f"{' '.join(words)}\t{int(words[0] in POSITIVE)}")
        (data / "SST-2" / name).write_text("\n".join(rows) + "\n")
    common = dict(task="sst2", data_dir=str(data), max_length=16, batch_size=8, lr=1e-3)
    train(TrainConfig(out=str(folder / "teacher"), teacher=str(hf), float_model=True, distill=DistillConfig(mode="none"),
                      **common))
    train(TrainConfig(out=str(folder / "float"), teacher=str(folder / "teacher"), attention="inhibitor",
                      float_model=True, layer_init_steps=-1, **common))
    return folder / "teacher", folder / "float", common


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--init-student")
    ap.add_argument("--teacher")
    ap.add_argument("--task", default="rt")
    ap.add_argument("--data-dir")
    ap.add_argument("--limit", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=48)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.init_student:
            teacher, student = Path(args.teacher), Path(args.init_student)
            common = dict(task=args.task, data_dir=args.data_dir, max_length=args.max_length,
                          batch_size=args.batch_size, limit=args.limit)
        else:
            teacher, student, common = tiny_setup(tmp)
        starts = start_of(student)
        for name, run in (("linear", student), ("log", as_log(student, tmp / "float-log"))):
            out = tmp / f"qat-{name}"
            cfg = TrainConfig(out=str(out), teacher=str(teacher), attention="inhibitor", init_student=str(run),
                              epochs=1, **common)
            metrics = train(cfg)
            steps = metrics["history"][-1]["step"]
            qmodel = load_quant_run(out)
            ends = [(b.attn.core.log2_gamma.item(), b.attn.core.log2_beta.item()) for b in qmodel.encoder.blocks]
            moved = [abs(e - s) for se, ee in zip(starts, ends) for s, e in zip(se, ee)]
            crossed = sum(math.floor(e + 0.5) != s for se, ee in zip(starts, ends) for s, e in zip(se, ee))
            rate = rounded_lr(cfg.scalar_lr, steps) if name == "log" else cfg.scalar_lr
            print(json.dumps({"scalars": name, "steps": steps, "log2_rate": rate, "max_moved": round(max(moved), 4),
                              "mean_moved": round(sum(moved) / len(moved), 4), "crossed": crossed,
                              "of": len(moved), "validation": metrics["validation"]}))


if __name__ == "__main__":
    main()
