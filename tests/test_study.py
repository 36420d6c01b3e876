"""`hwsim study`: the recipe fingerprint it shares with the demo, the cached-step protocol, the ETA,
and on a tiny recipe (real MiniLM teacher, 24 RT snippets, the inhibitor only) in subprocesses: two
runs give identical records, and a run SIGKILLed inside a training stage and run again resumes that
stage, redoes no finished one and writes the uninterrupted run's record (times and creation aside).
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from hwsim.app.demo import DemoConfig, config_dict
from hwsim.app.ledger import data_sizes, load_records, recipe, recipe_of
from hwsim.app.stages import Progress, Step, fingerprint
from hwsim.app.study import StudyConfig
from tests.test_train import run_cli, saved_step, sigkill, start, wait_for_step

# the flat configuration `hwsim demo --full` hashed before the study existed (commit 3af99a1's DemoConfig.full)
DEMO_FULL_BEFORE = {"out": "demo_out", "force": False, "bits": 8, "max_length": 64, "teacher_epochs": 2,
                    "teacher_train_limit": None, "student_epochs": 2, "student_batch_size": 16, "student_lr": 2e-4,
                    "student_train_limit": None, "qat_epochs": 1, "qat_train_limit": None, "qat_batch_size": 16,
                    "layer_init_steps": -1, "transfer_copies": 0, "transfer_plots": False, "dot_student": True,
                    "ort_check": 128, "sweep_lengths": [16, 32, 64, 128, 256, 512], "seed": 0, "teacher": "minilm",
                    "limit": None}


def test_full_recipe_has_the_fingerprint_of_the_full_demo_before_the_study():
    """A record of `hwsim demo --full` made before the study and study records of the whole recipe pool."""
    study = StudyConfig()
    assert recipe_of(study) == recipe(DEMO_FULL_BEFORE, "rt", data_sizes(study))
    cut = {**DEMO_FULL_BEFORE, "max_length": 48, "teacher_epochs": 1, "teacher_train_limit": 3000, "student_epochs": 1,
           "student_train_limit": 2000, "qat_train_limit": 1000, "ort_check": 16}
    assert recipe_of(StudyConfig.cut()) == recipe(cut, "rt", data_sizes(StudyConfig.cut()))
    assert recipe_of(DemoConfig.full().recipe) == recipe_of(study) != recipe_of(replace(study, student_lr=1e-4))
    # report.json's flat configuration: the old keys, and it gives the configuration back
    assert set(config_dict(DemoConfig.full())) == set(DEMO_FULL_BEFORE) | {"out"}
    for cfg in (DemoConfig(), DemoConfig.full(out="x", seed=3)):
        assert DemoConfig.from_flat(json.loads(json.dumps(config_dict(cfg)))) == cfg


def test_step_is_cached_only_under_its_fingerprint(tmp_path):
    out = tmp_path / "model.txt"
    step = Step("s", tmp_path / "stages" / "s.json", out, out, {"lr": 1})
    assert not step.cached() and step.begin() is False  # nothing yet: a fresh start, marker written
    out.write_text("made with lr 1")
    step.finish(2.0)
    assert step.cached() and step.stored() == {"fingerprint": fingerprint({"lr": 1}), "settings": {"lr": 1},
                                               "seconds": 2.0}
    other = replace(step, settings={"lr": 2})
    assert not other.cached()
    assert other.begin() is False and not out.exists()  # the other settings' output is removed first
    assert other.stored()["seconds"] is None and not step.cached()
    assert other.begin() is True  # killed after beginning: the same fingerprint continues
    out.write_text("made with lr 2")
    assert other.cached() and other.begin(force=True) is False and not out.exists()


def test_eta_from_the_stages_timed_so_far():
    now = 1_000_000.0
    said = []
    p = Progress([0, 1], ["teacher", "float-dot", "float-inhibitor"], said.append, clock=lambda: now)
    p.start(0, 0)
    assert said[-1] == "seed 0 stage 1/3 teacher ... ETA unknown until a stage is timed"
    p.done("teacher", 60.0)
    p.start(0, 1)  # float-dot, float-inhibitor, teacher, float-dot, float-inhibitor: 2 float students untimed
    assert said[-1] == f"seed 0 stage 2/3 float-dot ... ETA > {time.strftime('%H:%M', time.localtime(now + 60))} (4 stages not yet timed)"
    p.done("float-dot", 300.0)
    p.start(0, 2)  # float-inhibitor as the mean float student (300), then seed 1: 60 + 300 + 300
    assert said[-1].endswith(f"ETA {time.strftime('%H:%M', time.localtime(now + 960))}")
    p.done("float-inhibitor", 1200.0)
    p.cached(1, 0, 50.0)  # seed 1's teacher was cached: it took 50 s when it ran
    assert said[-1] == "seed 1 stage 1/3 teacher: cached (it took 50 s)"
    p.start(1, 1)  # the same stages of seed 0 are the estimates
    assert said[-1].endswith(f"ETA {time.strftime('%H:%M', time.localtime(now + 1500))}")


@pytest.mark.parametrize("args, message", [
    (["--variants", "dot,softmax"], "--variants must name distinct variants among dot, inhibitor, symmetric"),
    (["--variants", "dot,dot"], "--variants must name distinct variants"),
    (["--seeds", "0,0"], "--seeds must be distinct integers >= 0, got 0,0"),
    (["--save-every", "0"], "need --save-every >= 1"),
    (["--block-init-steps", "-2"], "need --layer-init-steps and --block-init-steps >= -1 (-1: one pass), got -1, -2"),
])
def test_bad_options_are_refused_before_any_work(tmp_path, capsys, args, message):
    from hwsim.app.cli import main
    assert main(["study", "--out", str(tmp_path / "out"), "--results", str(tmp_path / "results"), *args]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


# ---------------------------------------------------------------- a tiny study in subprocesses

TINY = ["--variants", "inhibitor", "--limit", 24, "--teacher-train-limit", 24, "--student-train-limit", 24,
        "--qat-train-limit", 24, "--max-length", 12, "--teacher-epochs", 1, "--student-epochs", 1,
        "--student-batch-size", 4, "--qat-batch-size", 4, "--save-every", 1, "--ort-check", 2]


def study_args(folder: Path) -> list[str]:
    return ["study", "--out", str(folder / "out"), "--results", str(folder / "results"), *map(str, TINY)]


def the_record(folder: Path) -> dict:
    """The one record in `folder`/results without what may differ between equal runs: its creation
    time and the stage times."""
    (_, record), = load_records(folder / "results")
    return {k: v for k, v in record.items() if k not in ("created", "stage_s")}


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("whole")
    done = run_cli(study_args(folder))
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


def test_two_runs_give_identical_records(whole, tmp_path):
    done = run_cli(study_args(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    record = the_record(whole)
    assert the_record(tmp_path) == record
    assert record["schema"] == "hwsim-ledger/2" and record["kind"] == "study" and list(record["variants"]) == ["inhibitor"]
    assert record["variants"]["inhibitor"]["int8"]["hwsim_equals_qat"] is True
    # the teacher's packed predictions: as many as test labels, and its evaluation's accuracy
    teacher = record["teacher"]
    right = sum(p == g for p, g in zip(teacher["test_predictions"], record["test_labels"]))
    assert len(teacher["test_predictions"]) == 24 and right / 24 == teacher["test_accuracy"]
    (_, full), = load_records(whole / "results")
    assert set(full["stage_s"]) >= {"teacher", "predict-teacher", "float-inhibitor", "int8-inhibitor",
                                    "export-inhibitor", "simulate-inhibitor", "total"}
    # a finished training stage keeps its model and metrics, not its training checkpoints (written every step)
    runs = sorted((whole / "out" / "seed0" / "runs").iterdir())
    assert [r.name for r in runs] == ["float-inhibitor", "int8-inhibitor", "teacher"]
    assert all((r / "metrics.json").exists() and not (r / "checkpoints").exists() for r in runs)


def test_killed_study_resumes_and_writes_the_uninterrupted_record(whole, tmp_path):
    run = tmp_path / "out" / "seed0" / "runs"
    killed = start(study_args(tmp_path))
    try:
        wait_for_step(killed, run / "float-inhibitor", 1)  # a checkpoint after step 2 of 6 exists
        sigkill(killed)
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait()
    at = saved_step(run / "float-inhibitor")
    assert at >= 2 and not (run / "float-inhibitor" / "metrics.json").exists()
    finished = {p: p.stat().st_mtime_ns for p in (run / "teacher").iterdir() if p.is_file()}
    again = run_cli(study_args(tmp_path))
    assert again.returncode == 0, again.stderr[-3000:]
    said = again.stdout + again.stderr
    assert "stage 1/6 teacher: cached" in said and "stage 2/6 predict-teacher: cached" in said
    assert f"resumed from step {at} of 6" in said
    assert finished == {p: p.stat().st_mtime_ns for p in (run / "teacher").iterdir() if p.is_file()}
    assert the_record(tmp_path) == the_record(whole)
    assert not list(tmp_path.rglob("*.part"))


def test_a_per_head_study_runs_bit_exactly_with_per_head_node_attributes(whole, tmp_path):
    """`--inhibitor-per-head` on the tiny recipe, the teacher's stages taken from `whole`: the float
    student calibrates per head, its QAT student exports InhibitorAttention nodes with one z_shift, alpha
    and out_shift per head, and hwsim equals the QAT evaluation (onnxruntime checked on 2 samples); the
    recipe's fingerprint is not the plain one's."""
    import shutil

    import onnx
    from onnx import helper
    shutil.copytree(whole / "out", tmp_path / "out")
    for stage in ("float-inhibitor", "int8-inhibitor"):
        shutil.rmtree(tmp_path / "out" / "seed0" / "runs" / stage)
    done = run_cli([*study_args(tmp_path), "--inhibitor-per-head"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "teacher: cached" in done.stderr + done.stdout
    record = the_record(tmp_path)
    assert record["variants"]["inhibitor"]["int8"]["hwsim_equals_qat"] is True
    assert record["recipe"]["settings"]["demo"]["inhibitor_per_head"] is True
    assert record["recipe"]["fingerprint"] != the_record(whole)["recipe"]["fingerprint"]
    model = onnx.load(str(tmp_path / "out" / "seed0" / "models" / "inhibitor-w8.onnx"))
    nodes = [n for n in model.graph.node if n.op_type == "InhibitorAttention"]
    assert nodes
    for node in nodes:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert all(isinstance(attrs[k], list) and len(attrs[k]) == 12 for k in ("z_shift", "alpha", "out_shift"))
    assert any(len(set(helper.get_attribute_value(a))) > 1 for n in nodes for a in n.attribute if a.name == "z_shift")
