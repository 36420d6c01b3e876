"""Faults: SIGKILL the real command line at random moments; its output file is either absent or
complete (a valid model / full CSV, PNG or JSON). A kill inside a write may leave that write's temporary
`.NAME.PID.XXXX.part` (a SIGKILL cannot be caught); the next run of the command deletes it, and a
completed run leaves no `*.part` file behind.
The training kill/resume test lives in tests/test_train.py (owned there)."""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.test_bad_inputs import ROOT, hwsim, kit  # noqa: F401 - the kit fixture: model, tokenizer, run report

KILLS = 3  # random moments per command
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def _killed_at(args: list, cwd: Path, delay: float) -> int:
    proc = subprocess.Popen([sys.executable, "-m", "hwsim.cli", *map(str, args)], cwd=cwd, env=ENV,
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


def _kill_and_check(case: Path, args: list, outputs: dict[str, callable]) -> list[str]:
    """Time one full run, then kill KILLS runs at random moments inside it; check the outputs."""
    case.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    assert _killed_at(args, case, 600) == 0
    full = time.perf_counter() - t0
    rng = random.Random(f"{args[0]}:{os.getpid()}")
    seen = []
    for _ in range(KILLS):
        for name in outputs:
            (case / name).unlink(missing_ok=True)
        code = _killed_at(args, case, rng.uniform(0.05, 1.0) * full)
        seen.append("finished" if code == 0 else "killed")
        for name, complete in outputs.items():
            if (case / name).exists():
                complete(case / name)
        left = sorted(p.name for p in case.rglob("*.part"))
        if code == 0:
            assert not left, f"a completed run left temporaries: {left}"
        for name in left:  # only a killed writer's temporary, named so the next run can remove it
            assert re.fullmatch(r"\.(%s)\.\d+\.[^.]+\.part" % "|".join(map(re.escape, outputs)), name), left
    assert _killed_at(args, case, 600) == 0
    for name, complete in outputs.items():
        complete(case / name)
    assert not list(case.rglob("*.part")), sorted(p.name for p in case.iterdir())
    return seen


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


def test_training_kill_resume_is_covered():
    source = (ROOT / "tests" / "test_train.py").read_text(encoding="utf-8")
    assert "resume" in source and ("SIGKILL" in source or "kill" in source)

