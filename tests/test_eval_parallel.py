"""`hwsim run` split over worker processes (--jobs) and over a local Dask cluster (--workers) writes
the report of the single-process run, byte for byte apart from its "timing" entry; a sharded Dask
run killed with SIGKILL (driver, scheduler and workers) resumes without redoing a finished shard.

Tiny setup of tests/test_bad_inputs.py: a synthetic 1-layer integer model and an 85-token tokenizer;
the equality tests run the first 40 snippets of the RT test split, the kill test 400 random word
strings of 1-60 words from a seeded generator.
"""
from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hwsim.app.cli import main

ROOT = Path(__file__).resolve().parents[1]
WORDS = [a + b for a in "bcdfghjk" for b in "aeiouxyz"][:80]  # the model knows the first 45 (vocab 50)
SYNTH = dict(vocab=50, max_position=64, hidden=8, heads=2, ffn=16, layers=1, attention="dot")
POLL_S = 0.002


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """A tiny model, its tokenizer, and the single-process report of TEXTS."""
    from transformers import BertTokenizerFast

    from export import save_model, to_onnx
    from quant.intops.synth import SynthConfig, synth_program

    root = tmp_path_factory.mktemp("eval")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}).save_pretrained(str(root / "tok"))
    save_model(to_onnx(synth_program(SynthConfig(**SYNTH))), root / "m.onnx")
    assert main(run_args(root, RT_TEST, root / "single.json", "--jobs", "1", "--check-ort", "5")) == 0
    return root


def texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS[:45], k=rng.randint(1, 60))) for _ in range(n)]


RT_TEST = ("--task", "rt", "--split", "test", "--limit", "40")  # the first 40 snippets of the RT test split


def text_args(samples: list[str]) -> tuple[str, ...]:
    return tuple(a for t in samples for a in ("--text", t))


def run_args(kit: Path, source: tuple[str, ...], report: Path, *extra) -> list[str]:
    return ["run", str(kit / "m.onnx"), *source, "--tokenizer", str(kit / "tok"), "--report", str(report),
            *map(str, extra)]


def without_timing(path: Path) -> bytes:
    """The report's bytes up to its last entry, "timing" (which differs from run to run)."""
    raw = path.read_bytes()
    head, sep, tail = raw.rpartition(b',\n "timing": {')
    assert sep and tail.count(b"{") == 0, f"{path}: no final timing entry"
    return head


def shard_files(folder: Path) -> dict[str, tuple[int, int]]:
    """Finished shard files by name: (inode, mtime_ns); a rewrite (atomic rename) changes both."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("shard-*.json")}


def test_process_pool_report_equals_single_process(kit, tmp_path):
    assert main(run_args(kit, RT_TEST, tmp_path / "pool.json", "--jobs", "2", "--check-ort", "5")) == 0
    assert without_timing(tmp_path / "pool.json") == without_timing(kit / "single.json")


def test_dask_report_equals_single_process_and_rerun_reuses_shards(kit, tmp_path):
    args = run_args(kit, RT_TEST, tmp_path / "dask.json", "--workers", "2", "--shard-size", "6", "--check-ort", "5")
    assert main(args) == 0
    assert without_timing(tmp_path / "dask.json") == without_timing(kit / "single.json")
    shards = shard_files(tmp_path / "dask.shards")
    assert len(shards) == 7  # 40 samples / 6
    assert main(args) == 0  # every shard already there: merged again, none rewritten
    assert shard_files(tmp_path / "dask.shards") == shards
    assert without_timing(tmp_path / "dask.json") == without_timing(kit / "single.json")


def test_foreign_shard_folder_is_refused(kit, tmp_path, capsys):
    folder = tmp_path / "shards"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"fingerprint": "another run"}', encoding="utf-8")
    code = main(run_args(kit, text_args(texts(3)), tmp_path / "r.json", "--workers", "1", "--shard-dir", folder))
    assert code == 2 and "holds shards of another run" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def start(args: list[str]) -> subprocess.Popen:
    """The CLI in a subprocess of its own session, so that SIGKILL can take its Dask workers too."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "hwsim.app.cli", *args], env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_group_gone(pgid: int, timeout_s: float = 30.0) -> None:
    """Wait until every process of group `pgid` is dead (a zombie counts as dead)."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [p for p in psutil.process_iter(["status"]) if _pgid(p.pid) == pgid
                 and p.info["status"] != psutil.STATUS_ZOMBIE]
        if not alive:
            return
        time.sleep(0.01)
    raise AssertionError(f"processes of group {pgid} outlived SIGKILL by {timeout_s} s")


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_sigkill_then_resume_redoes_no_finished_shard(kit, tmp_path):
    samples, folder = texts(400, seed=1), tmp_path / "r.shards"
    args = run_args(kit, text_args(samples), tmp_path / "r.json", "--workers", "2", "--shard-size", "2")
    proc = start(args)
    try:
        while len(shard_files(folder)) < 3:
            assert proc.poll() is None, f"exited {proc.returncode} before 3 shards: {proc.stderr.read()[-2000:]}"
            time.sleep(POLL_S)
    finally:
        with contextlib.suppress(ProcessLookupError):  # the driver, its scheduler, nannies and workers
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    wait_group_gone(proc.pid)  # no killed worker can still finish a rename after the snapshot
    finished = shard_files(folder)
    assert 3 <= len(finished) < 200, f"{len(finished)} of 200 shards at the kill: the kill came too late to test"
    assert not (tmp_path / "r.json").exists()

    resumed = subprocess.run(proc.args, env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming: {len(finished)} of 200 shards" in resumed.stdout + resumed.stderr
    after = shard_files(folder)
    assert len(after) == 200 and {k: after[k] for k in finished} == finished
    assert not list(folder.glob("*.part")), "a temporary shard file was left behind"
    assert main(run_args(kit, text_args(samples), tmp_path / "whole.json", "--jobs", "1")) == 0
    assert without_timing(tmp_path / "r.json") == without_timing(tmp_path / "whole.json")
