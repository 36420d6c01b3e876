"""`hwsim run --scheduler ADDRESS` against a real cluster: a `dask scheduler` and two `dask worker`
processes (one thread each) started from the `dask` command line on 127.0.0.1, as a user starts them
on several machines, and the CLI run as a subprocess of its own. The report is the single-process one,
byte for byte apart from its "timing" entry, and stays so when the model file is rewritten at the same
path between two runs on the same long-lived workers. A cluster with a worker that cannot import the
project, or imports other code of it, is refused before any task is sent.

The cluster runs in a folder of its own with PYTHONPATH set to this checkout, so the workers import
the code under test (checked), not whatever copy of the project is installed; the driver runs in the
kit's folder with relative paths, so the workers see the files only through the absolute paths the
driver sends. Tiny setup of tests/test_eval_parallel.py: a synthetic 1-layer integer model and an
85-token tokenizer, the first 40 snippets of the RT test split.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hwsim.app.cli import main
from tests.test_eval_parallel import RT_TEST, SYNTH, WORDS, without_timing

pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
DASK = Path(sys.executable).with_name("dask")  # the `dask` command of the interpreter running the tests
START_S = 60  # a cluster that is not up by then, or a run that hangs past RUN_S, fails the test
RUN_S = 120
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    """A TCP port on HOST that nothing listens on now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def dask_command() -> list[str]:
    if DASK.is_file():
        return [str(DASK)]
    found = shutil.which("dask")
    if found is None:
        pytest.skip("no `dask` command next to the interpreter or on PATH")
    return [found]


def stop(procs: list[subprocess.Popen], timeout_s: float = 10.0) -> None:
    """SIGTERM every process's group (a worker's nanny and its worker process), SIGKILL what is left
    after `timeout_s`, and reap them all."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, sig)
        deadline = time.monotonic() + timeout_s
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
        if all(p.poll() is not None for p in procs):
            return


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(address, spawn) of a scheduler with two 1-thread workers, all on HOST; `spawn(name, *args)` runs
    another `dask` command there. Torn down at the end even when starting it failed. The scheduler
    quits after 5 idle minutes and the workers 30 s after losing it, so not even a killed test run
    leaves them behind for long."""
    from distributed import Client

    folder = tmp_path_factory.mktemp("cluster")
    address = f"tcp://{HOST}:{free_port()}"
    dask = dask_command()
    log = {}

    def spawn(name: str, *args: str, env: dict | None = None) -> subprocess.Popen:
        """`dask ARGS` in the cluster's folder (environment ENV unless `env`), its output in NAME.log."""
        log[name] = open(folder / f"{name}.log", "w+", encoding="utf-8")  # noqa: SIM115 - closed below
        return subprocess.Popen([*dask, *args], cwd=folder, env=env or ENV, stdout=log[name],
                                stderr=subprocess.STDOUT, start_new_session=True)

    def hwsim_origin() -> str:  # local, so Dask ships it by value: the workers need not import this file
        import hwsim
        return hwsim.__file__

    procs = []
    try:
        procs.append(spawn("scheduler", "scheduler", "--host", HOST, "--port", address.rsplit(":", 1)[1],
                           "--no-dashboard", "--idle-timeout", "300s"))
        procs += [spawn(f"w{i}", *worker_args(address, folder, f"w{i}")) for i in range(2)]
        with Client(address, timeout=f"{START_S}s") as client:
            client.wait_for_workers(2, timeout=START_S)
            origins = client.run(hwsim_origin)
        assert set(origins.values()) == {str(ROOT / "hwsim" / "__init__.py")}, origins
        yield address, spawn
    except BaseException:
        show_logs(log)
        raise
    finally:
        stop(procs)
        for f in log.values():
            f.close()


def worker_args(address: str, folder: Path, name: str, *extra: str) -> list[str]:
    return ["worker", address, "--host", HOST, "--nthreads", "1", "--name", name, "--no-dashboard",
            "--death-timeout", "30", "--local-directory", str(folder / name), *extra]


def show_logs(log: dict) -> None:
    for name, f in log.items():
        f.seek(0)
        print(f"--- {name} ---\n{f.read()[-3000:]}", file=sys.stderr)


def write_model(path: Path, seed: int) -> None:
    from export import save_model, to_onnx
    from quant.intops.synth import SynthConfig, synth_program

    save_model(to_onnx(synth_program(SynthConfig(**SYNTH, seed=seed))), path)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """A folder with the tokenizer of tests/test_eval_parallel.py (the model is written by the test)."""
    from transformers import BertTokenizerFast

    root = tmp_path_factory.mktemp("kit")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}).save_pretrained(str(root / "tok"))
    return root


def run_args(report: str, *extra: str) -> list[str]:
    """`hwsim run` of the RT snippets on m.onnx, relative to the kit folder."""
    return ["run", "m.onnx", *RT_TEST, "--tokenizer", "tok", "--check-ort", "5", "--report", report, *extra]


def run_cli(kit: Path, args: list[str], code: int = 0) -> str:
    """The CLI in a subprocess in `kit`, which must exit with `code`; its stderr."""
    done = subprocess.run([sys.executable, "-m", "hwsim.app.cli", *args], cwd=kit, env=ENV, capture_output=True,
                          text=True, timeout=RUN_S)
    assert done.returncode == code, done.stderr[-3000:]
    return done.stderr


def single(kit: Path, report: str) -> bytes:
    """The report of this process alone on the kit's current model."""
    cwd = os.getcwd()
    os.chdir(kit)
    try:
        assert main(run_args(report, "--jobs", "1")) == 0
    finally:
        os.chdir(cwd)
    return without_timing(kit / report)


def test_real_cluster_report_equals_single_process_also_after_the_model_is_rewritten(cluster, kit):
    address, _ = cluster
    reports = {}
    for seed in (0, 1):  # the same path, another model: long-lived workers must not reuse the first
        write_model(kit / "m.onnx", seed)
        run_cli(kit, run_args(f"dask{seed}.json", "--scheduler", address, "--shard-size", "6"))
        engine = json.loads((kit / f"dask{seed}.json").read_text(encoding="utf-8"))["timing"]["engine"]
        assert engine.startswith(f"dask ({address})"), engine
        assert len(list((kit / f"dask{seed}.shards").glob("shard-*.json"))) == 7  # 40 samples / 6
        reports[seed] = without_timing(kit / f"dask{seed}.json")
        assert reports[seed] == single(kit, f"single{seed}.json")
    assert reports[0] != reports[1]  # the two models differ, so a stale plan cannot pass unseen


HIDE = """import sys


class Hide:  # as on a machine where the project is not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {packages!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)


sys.meta_path.insert(0, Hide())
"""


def test_cluster_with_a_worker_without_the_project_or_with_other_code_is_refused(cluster, kit, tmp_path):
    from distributed import Client

    from hwsim.app.dask_run import PACKAGES

    address, spawn = cluster
    other = tmp_path / "other"  # a copy of the project with one module changed
    for name in PACKAGES:
        shutil.copytree(ROOT / name, other / name, ignore=shutil.ignore_patterns("__pycache__"))
    with open(other / "hwsim" / "app" / "dask_run.py", "a", encoding="utf-8") as f:
        f.write("# another version\n")
    (tmp_path / "hide.py").write_text(HIDE.format(packages=set(PACKAGES)), encoding="utf-8")
    extra = []
    try:
        other_env = {**ENV, "PYTHONPATH": str(other)}
        extra.append(spawn("w-other", *worker_args(address, tmp_path, "w-other"), env=other_env))
        extra.append(spawn("w-none", *worker_args(address, tmp_path, "w-none", "--preload", str(tmp_path / "hide.py"))))
        with Client(address, timeout=f"{START_S}s") as client:
            client.wait_for_workers(4, timeout=START_S)
            by_name = {w["name"]: a for a, w in client.scheduler_info()["workers"].items()}
        write_model(kit / "m.onnx", 0)
        err = run_cli(kit, run_args("refused.json", "--scheduler", address), code=2)
        assert f"{by_name['w-other']}: other project files than this process" in err
        assert f"{by_name['w-none']}: ModuleNotFoundError: No module named 'hwsim'" in err
        assert by_name["w0"] not in err and by_name["w1"] not in err and "scheduler:" not in err
        assert not (kit / "refused.json").exists() and not (kit / "refused.shards").exists()
    finally:
        stop(extra)
