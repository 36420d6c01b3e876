"""SIGKILL a real QAT training process at a random moment, resume it (twice), and get the same final
checkpoint as an uninterrupted run, with no temporary `*.part` file left behind.

Tiny setup of tests/test_train.py: a random BERT teacher fine-tuned for one epoch, then an inhibitor
W8A8 student distilled from it on 32 examples for 2 epochs of 4 steps, a training checkpoint every
2 steps (the one at step 4 precedes the evaluation of epoch 0).
The kill moments come from a seeded `random.Random`; the seed is in the assertion messages.
"""
from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from hwsim.app.cli import main
from quant.train.checkpoint import checkpoint_dir, latest_checkpoint, load_state
from tests.test_train import (cli_args, glue_dir, run_cli, saved_step, sigkill, start,  # noqa: F401 - fixtures
                              tiny_teacher, wait_for_step)

SAVE_EVERY = 2
STEPS = 8  # 32 training examples / batch 8 * 2 epochs


def qat_args(teacher: Path, data: Path, out: Path, *extra) -> list[str]:
    return cli_args(teacher, data, out, "--attention", "inhibitor", "--bits", 8, "--distill", "task",
                    "--epochs", 2, "--train-limit", 32, "--save-every", SAVE_EVERY, *extra)


def plant_partial_writes(out: Path) -> list[Path]:
    """What a SIGKILL inside `atomic_path` leaves (the random kills above rarely land there): the
    temporary `.NAME.XXXX.part` holding the first half of the file, beside the complete file."""
    planted = []
    for target in (latest_checkpoint(out), out / "model.safetensors"):
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        data = target.read_bytes()
        os.write(fd, data[:len(data) // 2])
        os.close(fd)
        planted.append(Path(tmp))
    return planted


def tensors_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Names whose tensors differ (or exist on one side only)."""
    return sorted(set(a) ^ set(b)) + [k for k in sorted(set(a) & set(b)) if not torch.equal(a[k], b[k])]


def test_sigkill_and_resume_reach_the_uninterrupted_checkpoint(tiny_teacher, glue_dir, tmp_path):  # noqa: F811
    assert main(cli_args(tiny_teacher, glue_dir, tmp_path / "float", "--float", "--epochs", 1,
                         "--train-limit", 32)) == 0
    teacher, whole_out, out = tmp_path / "float", tmp_path / "whole", tmp_path / "killed"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    whole = start(qat_args(teacher, glue_dir, whole_out))  # alongside the killed runs (startup dominates)
    try:
        # first run: time a step between its first two checkpoints, kill a random fraction of a step
        # after the second (in the evaluation of epoch 0 or in step 5)
        killed = start(qat_args(teacher, glue_dir, out))
        first = wait_for_step(killed, out, 0)
        step_s = (wait_for_step(killed, out, SAVE_EVERY) - first) / SAVE_EVERY
        time.sleep(rng.random() * step_s)
        sigkill(killed)
        assert not (out / "metrics.json").exists(), f"seed {seed}"
        # resumed run: kill a random fraction of a step after its first checkpoint
        killed_at = saved_step(out)
        killed = start(qat_args(teacher, glue_dir, out, "--resume"))
        wait_for_step(killed, out, killed_at)
        time.sleep(rng.random() * step_s)
        sigkill(killed)
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait()
    second = saved_step(out)
    assert second > killed_at, f"seed {seed}: the resumed run wrote no checkpoint after step {killed_at}"
    planted = plant_partial_writes(out)
    resumed = run_cli(qat_args(teacher, glue_dir, out, "--resume"))
    assert resumed.returncode == 0, f"seed {seed}: {resumed.stderr[-3000:]}"
    assert f"resumed from step {second} of {STEPS}" in resumed.stderr + resumed.stdout
    assert whole.wait(timeout=300) == 0, whole.stderr.read()[-3000:]
    whole.stderr.close()

    where = f"seed {seed}, killed after steps {killed_at} and {second}"
    differ = tensors_equal(load_file(whole_out / "model.safetensors"), load_file(out / "model.safetensors"))
    assert not differ, f"{where}: {differ[:5]}"
    states = [load_state(latest_checkpoint(o)) for o in (whole_out, out)]
    assert states[0]["step"] == states[1]["step"] == STEPS
    assert not tensors_equal(states[0]["model"], states[1]["model"]), where
    assert not any(p.exists() for p in planted), where
    assert not list(tmp_path.rglob("*.part")), f"{where}: {sorted(map(str, tmp_path.rglob('*.part')))}"
    assert sorted(p.name for p in checkpoint_dir(out).iterdir()) == [f"step-{STEPS - 2:07d}.pt", f"step-{STEPS:07d}.pt"]
