"""Training: float fine-tuning, QAT with distillation, exact resume after SIGKILL, DDP, errors.

Everything runs on a tiny random BERT (hidden 32, 2 layers) with a word-level vocabulary and a
tiny GLUE-format SST-2 folder built here, so each run takes seconds.
"""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hwsim.app.cli import main
from models.variants import InhibitorOptions

WORDS = "good bad great awful fine boring fun dull nice poor film movie plot cast very not a the".split()
POSITIVE = {"good", "great", "fine", "fun", "nice"}


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory) -> Path:
    """A random BertModel with its WordPiece tokenizer, as a Hugging Face folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast
    folder = tmp_path_factory.mktemp("tiny_teacher")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=32, pad_token_id=0)
    BertModel(cfg).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory) -> Path:
    """SST-2 in GLUE's TSV layout: 64 training and 24 dev sentences, labelled by their first word."""
    root = tmp_path_factory.mktemp("glue")
    (root / "SST-2").mkdir()
    gen = torch.Generator().manual_seed(0)
    for name, n in (("train.tsv", 64), ("dev.tsv", 24)):
        rows = ["sentence\tlabel"]
        for _ in range(n):
            words = [WORDS[int(i)] for i in torch.randint(len(WORDS), (int(torch.randint(3, 9, (1,), generator=gen)),),
                                                          generator=gen)]
            rows.append(f"{' '.join(words)}\t{int(words[0] in POSITIVE)}")
        (root / "SST-2" / name).write_text("\n".join(rows) + "\n")
    return root


def cli_args(teacher, data, out, *extra) -> list[str]:
    return ["train", "--task", "sst2", "--data-dir", str(data), "--teacher", str(teacher), "--batch-size", "8",
            "--max-length", "16", "--lr", "1e-3", "--out", str(out), *map(str, extra)]


def run_cli(args: list[str], env: dict[str, str] | None = None, module: list[str] | None = None,
            timeout: float = 300):
    cmd = [sys.executable, *(module or ["-m", "hwsim.app.cli"]), *args]
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)


def test_float_then_qat_distilled(tiny_teacher, glue_dir, tmp_path):
    assert main(cli_args(tiny_teacher, glue_dir, tmp_path / "float", "--float", "--epochs", 2)) == 0
    metrics = json.loads((tmp_path / "float" / "metrics.json").read_text())
    assert set(metrics["validation"]) == {"accuracy"} and len(metrics["history"]) == 2
    assert (tmp_path / "float" / "model.safetensors").is_file()
    pytest.importorskip("quant.qat.model")
    from quant.train.checkpoint import load_quant_run
    out = tmp_path / "qat"
    assert main(cli_args(tmp_path / "float", glue_dir, out, "--attention", "inhibitor", "--bits", 8,
                         "--distill", "task", "--layer-init-steps", 3)) == 0
    qmetrics = json.loads((out / "metrics.json").read_text())
    assert qmetrics["distill"] == "task" and 0.0 <= qmetrics["validation"]["accuracy"] <= 1.0
    agnostic = tmp_path / "agnostic"
    assert main(cli_args(tmp_path / "float", glue_dir, agnostic, "--attention", "symmetric", "--widths", "w8a8-att4",
                         "--distill", "agnostic")) == 0
    ametrics = json.loads((agnostic / "metrics.json").read_text())
    assert set(ametrics["history"][0]["loss"]) == {"hid", "ctx"}  # no labels used
    assert ametrics["widths"] == "w8a8-att4" and qmetrics["widths"] == "w8a8"
    assert load_quant_run(agnostic).qcfg.attention_bits == 4  # the checkpoint keeps the setting
    qmodel = load_quant_run(out)
    ids = torch.tensor([[2, 5, 6, 3]])
    assert qmodel(ids, torch.ones_like(ids)).shape == (1, 2)
    # metrics.json takes validation from the training loop; the saved checkpoint reproduces it exactly
    from models.loading import load_checkpoint, load_tokenizer
    from quant.data.tasks import encode, get_task, load_split
    from quant.train.loop import evaluate
    dev = encode(load_split("sst2", "validation", glue_dir), load_tokenizer(tiny_teacher), 16)
    for folder, model in ((tmp_path / "float", load_checkpoint(tmp_path / "float")[0]), (out, qmodel)):
        saved = json.loads((folder / "metrics.json").read_text())["validation"]
        assert evaluate(model, get_task("sst2"), dev, 128, torch.device("cpu")) == saved
    # shortest-first batches give the quantized model's logits of one example at a time, exactly
    from quant.train.runtime import predict, take
    cpu = torch.device("cpu")
    alone = torch.cat([qmodel.eval()(**{k: v for k, v in take(dev, [i], cpu).items() if k != "labels"}).float()
                       for i in range(len(dev["labels"]))])
    lengths = dev["attention_mask"].sum(1)
    assert lengths.min() < lengths.max()  # mixed lengths, so the batches are padded differently
    assert torch.equal(predict(qmodel, dev, 3, cpu), alone) and torch.equal(predict(qmodel, dev, 128, cpu), alone)


def test_float_student_distilled_with_relu_layer_init_and_scalar_rate(tiny_teacher, glue_dir, tmp_path):
    """A float inhibitor student distilled from a fine-tuned GELU teacher: ReLU FFN, calibrated, fitted
    layer by layer over the shuffled split, trained on KL + CE + hidden + contexts; its scalars move
    at their own rate, far more than the projections' rate would move them."""
    from models.loading import load_checkpoint
    teacher = tmp_path / "teacher"
    assert main(cli_args(tiny_teacher, glue_dir, teacher, "--float", "--epochs", 1)) == 0
    assert load_checkpoint(teacher)[1].activation == "gelu"  # the teacher keeps its activation
    runs = {}
    for name, scalar_lr in (("slow", "1e-9"), ("fast", "0.05")):
        out = tmp_path / name
        assert main(cli_args(teacher, glue_dir, out, "--float", "--attention", "inhibitor", "--distill", "task",
                             "--layer-init-steps", -1, "--scalar-lr", scalar_lr)) == 0
        runs[name] = load_checkpoint(out)
        history = json.loads((out / "metrics.json").read_text())["history"]
        assert set(history[0]["loss"]) == {"ce", "kl", "hid", "ctx"}
    (slow, cfg), (fast, _) = runs["slow"], runs["fast"]
    assert cfg.activation == "relu" and cfg.attention == "inhibitor"
    moved = [abs(f.attn.alpha.item() - s.attn.alpha.item()) for f, s in zip(fast.encoder.blocks, slow.encoder.blocks)]
    assert min(moved) > 1e-3  # identical runs but for the scalar rate
    dot = tmp_path / "dot-relu"  # a dot student of the same attention is rebuilt with ReLU when distilled
    assert main(cli_args(teacher, glue_dir, dot, "--float", "--distill", "task")) == 0
    assert load_checkpoint(dot)[1].activation == "relu"


def test_transfer_set_is_taught_by_the_teacher_alone(tiny_teacher, tmp_path, capsys):
    """rt with augmented copies and the plot chunks of training movies: the run trains on more
    examples than the labelled snippets, and cross-entropy never sees a transfer example."""
    from quant.train.distill import UNLABELLED, task_loss
    teacher = tmp_path / "teacher"
    common = ("--task", "rt", "--limit", 24, "--max-length", 16, "--batch-size", 8, "--lr", "1e-3",
              "--teacher")
    assert main(["train", *map(str, common), str(tiny_teacher), "--float", "--out", str(teacher)]) == 0
    out = tmp_path / "student"
    assert main(["train", *map(str, common), str(teacher), "--float", "--distill", "task", "--attention",
                 "inhibitor", "--transfer-copies", "1", "--transfer-plots", "--out", str(out)]) == 0
    said = capsys.readouterr()
    assert "teacher-labelled examples" in said.out + said.err
    steps = json.loads((out / "metrics.json").read_text())["history"][0]["step"]
    assert steps > 24 // 8 + 500 // 8  # 24 snippets, up to 24 variants and the ~527 plot chunks
    logits = torch.tensor([[2.0, -1.0], [0.0, 3.0]])
    assert task_loss(logits, torch.tensor([0, UNLABELLED])) == task_loss(logits[:1], torch.tensor([0]))
    assert task_loss(logits, torch.tensor([UNLABELLED, UNLABELLED])) == 0


def start(args: list[str]) -> subprocess.Popen:
    """The CLI in a subprocess, with the environment of `run_cli` (one thread, offline)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "hwsim.app.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def saved_step(out: Path) -> int:
    """The step of the latest training checkpoint in `out` (0: none)."""
    from quant.train.checkpoint import latest_checkpoint
    path = latest_checkpoint(out)
    return int(path.stem.split("-")[1]) if path is not None else 0


def wait_for_step(proc: subprocess.Popen, out: Path, after: int) -> float:
    """Poll `out/checkpoints` until a checkpoint later than step `after` exists; its time."""
    while saved_step(out) <= after:
        assert proc.poll() is None, f"exited {proc.returncode} before step {after}: {proc.stderr.read()[-2000:]}"
        time.sleep(0.005)
    return time.perf_counter()


def sigkill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, f"not killed by SIGKILL: exit {proc.returncode}"


def _final_model(out: Path) -> dict[str, torch.Tensor]:
    from quant.train.checkpoint import latest_checkpoint, load_state
    return load_state(latest_checkpoint(out))["model"]


def test_float_resume_after_sigkill_reaches_same_weights_and_history(tiny_teacher, glue_dir, tmp_path):
    # 64 examples / batch 8 = 8 steps per epoch, 2 epochs = 16 steps; dropout 0.1 is active. Killed once
    # the checkpoint of step 8 (written before epoch 0's evaluation) exists, so the resumed run redoes
    # that evaluation and metrics.json's history must still match the uninterrupted run's.
    common = ("--float", "--epochs", 2, "--save-every", 4)
    killed = start(cli_args(tiny_teacher, glue_dir, tmp_path / "b", *common))
    try:
        wait_for_step(killed, tmp_path / "b", 4)
        sigkill(killed)
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait()
    at = saved_step(tmp_path / "b")
    assert 8 <= at < 16 and not (tmp_path / "b" / "metrics.json").exists(), at
    whole = run_cli(cli_args(tiny_teacher, glue_dir, tmp_path / "a", *common))
    assert whole.returncode == 0, whole.stderr
    resumed = run_cli(cli_args(tiny_teacher, glue_dir, tmp_path / "b", *common, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from step {at} of 16" in resumed.stdout + resumed.stderr
    a, b = _final_model(tmp_path / "a"), _final_model(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in "ab")
    assert ma["validation"] == mb["validation"] and ma["history"] == mb["history"]


def test_ddp_two_processes(tiny_teacher, glue_dir, tmp_path):
    args = cli_args(tiny_teacher, glue_dir, tmp_path / "ddp", "--float", "--epochs", 1, "--save-every", 2)
    proc = run_cli(args, module=["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                 "-m", "hwsim.app.cli"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["history"][0]["step"] == 4  # 64 examples / 2 processes / batch 8
    from quant.train.checkpoint import latest_checkpoint, load_state
    assert len(load_state(latest_checkpoint(tmp_path / "ddp"))["rng"]) == 2


@pytest.mark.parametrize("extra, message", [
    (("--task", "nope", "--float"), "unknown task 'nope'"),
    (("--attention", "nope", "--float"), "unknown attention 'nope'"),
    (("--resume", "--float"), "no training checkpoint"),
    (("--distill", "task"), "holds no fine-tuned float checkpoint"),
    (("--float", "--transfer-copies", 1), "labelled by the teacher"),
    (("--float", "--layer-init-steps", -2), "--layer-init-steps >= -1"),
    (("--float", "--block-init-steps", -2), "--block-init-steps must be >= -1 (-1: one pass; 0: none), got -2"),
])
def test_errors_name_the_problem(tiny_teacher, glue_dir, tmp_path, capsys, extra, message):
    assert main(cli_args(tiny_teacher, glue_dir, tmp_path / "err", *extra)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "err" / "metrics.json").exists()


# ---------------------------------------------------------------- losses

def test_losses_vanish_on_identical_outputs():
    from quant.train.distill import context_alignment, hidden_alignment, HiddenProjection, kl_loss, layer_map
    torch.manual_seed(0)
    logits, hidden = torch.randn(4, 3), [torch.randn(4, 5, 8) for _ in range(3)]
    mask = torch.ones(4, 5, dtype=torch.long)
    assert kl_loss(logits, logits, 2.0).abs() < 1e-6 and kl_loss(logits, -logits, 2.0) > 0.1
    proj = HiddenProjection(8, 8, 3)
    assert hidden_alignment(hidden, hidden, mask, "cosine", proj).abs() < 1e-6
    assert hidden_alignment(hidden, hidden, mask, "mse", proj) == 0
    assert context_alignment(hidden[:2], hidden[:2], mask) == 0
    assert layer_map(2, 2) == [0, 1, 2] and layer_map(3, 6) == [0, 2, 4, 6]


def test_hidden_alignment_of_the_last_layer_only():
    """`--hidden-layers last` counts the last aligned layer alone: a student equal to the teacher there
    and far off below has no hidden loss; the mean over all layers sees the others."""
    from quant.train.distill import HiddenProjection, hidden_alignment, token_loss
    torch.manual_seed(0)
    teacher = [torch.randn(2, 5, 8) for _ in range(4)]
    student = [torch.randn(2, 5, 8) for _ in range(3)] + [teacher[3]]
    mask = torch.ones(2, 5, dtype=torch.long)
    proj = HiddenProjection(8, 8, 4)
    assert hidden_alignment(student, teacher, mask, "mse", proj, "last") == 0
    every = sum(token_loss(student[i], teacher[i], mask, "mse") for i in (1, 2, 3)) / 3
    assert hidden_alignment(student, teacher, mask, "mse", proj) == every > 0


def test_kl_matches_reference():
    from quant.train.distill import kl_loss
    torch.manual_seed(1)
    s, t, T = torch.randn(6, 3), torch.randn(6, 3), 2.0
    p = (t / T).softmax(-1)
    ref = (p * (p.log() - (s / T).log_softmax(-1))).sum(-1).mean() * T * T
    assert torch.allclose(kl_loss(s, t, T), ref, atol=1e-6)


def test_layerwise_init_trains_only_attention_and_lowers_the_loss(tiny_teacher):
    from models.loading import load_pretrained
    from quant.train.distill import layerwise_init
    teacher = load_pretrained(tiny_teacher, "dot", 2, dropout=0.0, attention_dropout=0.0)
    student = load_pretrained(tiny_teacher, "symmetric", 2, dropout=0.0, attention_dropout=0.0)
    with torch.no_grad():  # move the student's values away from the teacher's
        for block in student.encoder.blocks:
            block.attn.v_lin.weight.add_(0.3 * torch.randn_like(block.attn.v_lin.weight))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    ids = torch.randint(5, 23, (8, 6))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    first = layerwise_init(student, teacher, [batch])  # the loss before its one step
    last = layerwise_init(student, teacher, [batch] * 40, lr=1e-3)  # mean of the last 10 steps
    assert len(first) == len(last) == len(student.encoder.blocks)
    assert all(b < a for a, b in zip(first, last))
    changed = {k for k, v in student.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".attn." in k and ".attn.out_lin." not in k for k in changed)


def test_calibrate_inhibitor_picks_the_best_power_of_two_gamma_and_least_squares_beta(tiny_teacher):
    import math
    from models.loading import load_pretrained
    from quant.train.distill import calibrate_inhibitor, token_loss
    from quant.train.loop import student_from
    teacher = load_pretrained(tiny_teacher, "dot", 2, dropout=0.0, attention_dropout=0.0)
    student, _ = student_from(teacher, "inhibitor", attention_options=InhibitorOptions(center=True, signed=True))
    ids = torch.randint(5, 23, (8, 7))
    mask = torch.ones_like(ids)
    mask[:3, 5:] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        out = teacher.forward_all(ids, mask)[1]

    def residual(block, layer):  # |ctx - teacher ctx|^2 / |teacher ctx|^2 over valid tokens
        with torch.no_grad():
            ctx = block.attn.context(out.hidden_states[layer], mask)
            return (token_loss(ctx, out.contexts[layer], mask, "mse") /
                    token_loss(torch.zeros_like(ctx), out.contexts[layer], mask, "mse")).item()

    before = [residual(b, l) for l, b in enumerate(student.encoder.blocks)]
    alphas = (0.25, 0.5, 1.0)
    fits = calibrate_inhibitor(student, teacher, [batch], exponents=range(-6, 3), alphas=alphas)
    for layer, (block, fit) in enumerate(zip(student.encoder.blocks, fits)):
        d = block.attn.head_dim
        assert block.attn.gamma.item() == pytest.approx(2.0 ** fit["exponent"] * math.sqrt(d))
        assert block.attn.beta.item() == pytest.approx(fit["beta"]) and fit["beta"] > 0
        assert block.attn.alpha.item() == fit["alpha"] and fit["alpha"] in alphas
        assert residual(block, layer) == pytest.approx(fit["residual"], rel=1e-4, abs=1e-6)
        assert fit["residual"] < before[layer]
        for e, a in itertools.product(range(-6, 3), alphas):  # no other candidate fits better
            block.attn.gamma.data.fill_(2.0 ** e * math.sqrt(d))
            block.attn.alpha.data.fill_(a)
            block.attn.beta.data.fill_(1.0)
            with torch.no_grad():
                h, t = block.attn.context(out.hidden_states[layer], mask), out.contexts[layer]
            keep = mask[..., None]
            if not (h * keep).any():  # every key inhibited: h = 0 exactly, no better than zero
                assert fit["residual"] < 1.0
                continue
            block.attn.beta.data.fill_(float((h * t * keep).sum() / (h * h * keep).sum()))
            assert residual(block, layer) >= fit["residual"] - 1e-6


def test_inhibitor_student_from_a_hugging_face_teacher_is_centred_signed_and_calibrated(tiny_teacher, glue_dir, tmp_path):
    from models.loading import load_checkpoint
    assert main(cli_args(tiny_teacher, glue_dir, tmp_path / "inh", "--float", "--attention", "inhibitor",
                         "--train-limit", 8)) == 0
    model, cfg = load_checkpoint(tmp_path / "inh")
    assert cfg.attention_options.center and cfg.attention_options.signed
    assert all(b.attn.beta.item() != 1.0 for b in model.encoder.blocks)  # calibrated, then trained
