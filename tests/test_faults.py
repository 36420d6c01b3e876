"""Faults: SIGKILL the real command line at fixed fractions of a full run's time; its output file is
either absent or complete (a valid model / full CSV, PNG or JSON). A kill inside a write may leave
that write's temporary `.NAME.PID.XXXX.part` (a SIGKILL cannot be caught); the next run of the
command deletes it, and a completed run leaves no `*.part` file behind.
Training is killed and resumed in tests/test_kill_resume.py (QAT) and tests/test_train.py (float)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.test_bad_inputs import ROOT, hwsim, kit  # noqa: F401 - the kit fixture: model, tokenizer, run report

KILL_AT = (0.15, 0.45, 0.75)  # kill moments, as fractions of the time of a full run
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def _killed_at(args: list, cwd: Path, delay: float) -> int:
    proc = subprocess.Popen([sys.executable, "-m", "hwsim.app.cli", *map(str, args)], cwd=cwd, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return proc.returncode


def _complete_onnx(path: Path) -> None:
    from export import validate
    import onnx
    validate(onnx.load(str(path)))


def _complete_csv(path: Path) -> None:
    assert path.read_text(encoding="utf-8").endswith("\n")


def _complete_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82")


def _complete_json(path: Path) -> None:
    assert "counts" in json.loads(path.read_text(encoding="utf-8"))


def _kill_and_check(case: Path, args: list, outputs: dict[str, callable]) -> None:
    """Time one full run, then kill a run at each of KILL_AT; check the outputs after each and after a
    final run. At least one kill must land before the run ends, or nothing was tested."""
    case.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    assert _killed_at(args, case, 600) == 0
    full = time.perf_counter() - t0
    codes = []
    for fraction in KILL_AT:
        for name in outputs:
            (case / name).unlink(missing_ok=True)
        codes.append(_killed_at(args, case, fraction * full))
        for name, complete in outputs.items():
            if (case / name).exists():
                complete(case / name)
        left = sorted(p.name for p in case.rglob("*.part"))
        if codes[-1] == 0:
            assert not left, f"a completed run left temporaries: {left}"
        for name in left:  # only a killed writer's temporary, named so the next run can remove it
            assert re.fullmatch(r"\.(%s)\.\d+\.[^.]+\.part" % "|".join(map(re.escape, outputs)), name), left
    assert -signal.SIGKILL in codes, f"no kill landed inside a {full:.1f} s run: exit codes {codes}"
    assert _killed_at(args, case, 600) == 0
    for name, complete in outputs.items():
        complete(case / name)
    assert not list(case.rglob("*.part")), sorted(p.name for p in case.iterdir())


def test_export_killed(tmp_path):
    args = ["export", "--init", "random", "--arch", "minilm", "--attention", "inhibitor", "--out", tmp_path / "c" / "m.onnx"]
    _kill_and_check(tmp_path / "c", args, {"m.onnx": _complete_onnx})


def test_report_killed(tmp_path, kit):  # noqa: F811 - fixture
    args = ["report", kit / "run.json", "--csv", tmp_path / "c" / "r.csv", "--plot", tmp_path / "c" / "r.png"]
    _kill_and_check(tmp_path / "c", args, {"r.csv": _complete_csv, "r.png": _complete_png})


def test_run_report_killed(tmp_path, kit):  # noqa: F811 - fixture
    args = ["run", kit / "good.onnx", "--text", "ba be bi", "--text", "bo bu", "--tokenizer", kit / "tok",
            "--check-ort", "--report", tmp_path / "c" / "r.json"]
    _kill_and_check(tmp_path / "c", args, {"r.json": _complete_json})



def test_full_disk_while_checkpointing_names_it_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    """A checkpoint write that fails midway (a full disk reaches torch.save's zip writer as 'RuntimeError:
    unexpected pos') is a UserError naming the file, the free space and the way out; the partial
    temporary is removed and the checkpoint before it is untouched."""
    import pytest
    import torch

    from models.errors import UserError
    from quant.train import checkpoint as ckpt

    first = ckpt.save_state(tmp_path, 1, {"w": torch.ones(3)})
    real_save = torch.save

    def failing_save(state, path):
        real_save(state, path)  # some bytes reach the disk, then the writer gives up
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 57200448 vs 57200336")

    monkeypatch.setattr(ckpt.torch, "save", failing_save)
    with pytest.raises(UserError, match=r"step-0000002\.pt .*unexpected pos.* MiB free .*--save-every"):
        ckpt.save_state(tmp_path, 2, {"w": torch.zeros(3)})
    assert sorted(p.name for p in ckpt.checkpoint_dir(tmp_path).iterdir()) == [first.name]
    assert ckpt.load_state(first)["w"].tolist() == [1.0, 1.0, 1.0]
