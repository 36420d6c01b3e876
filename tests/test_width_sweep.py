"""`hwsim widths`: the width sweep's statistics on synthetic ledger records with hand-counted
predictions, its refusals, and one tiny sweep end to end (real MiniLM teacher, 24 RT snippets, two
settings, the inhibitor) in a subprocess: the teacher and float students are shared by the
settings, every setting's models are bit-exact, and the tables and plots are written."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from hwsim.app.ledger import load_records, recipe, write_record
from hwsim.app.widths import accuracy_by_setting, paired_by_setting, verdict
from tests.test_ledger import make_record, right_on
from tests.test_train import run_cli

DATA = {"train": 10, "validation": 5, "test": 100, "train_used": {"teacher": 10, "student": 10, "qat": 10}}


def ledger(tmp_path, rights: dict) -> dict[str, str]:
    """Records of two settings x two seeds; `rights[(setting, seed)] = {variant: right examples}`."""
    labels = [i % 2 for i in range(100)]
    fps = {}
    for k, ((setting, seed), right) in enumerate(sorted(rights.items())):
        r = make_record(seed, labels, {v: right_on(labels, idx) for v, idx in right.items()}, f"2026-01-01T00:0{k}:00Z")
        r["recipe"] = recipe({"bits": int(setting[1])}, "rt", DATA)
        fps[setting] = r["recipe"]["fingerprint"]
        write_record(r, tmp_path)
    return {s: fps[s] for s in ("w8a8", "w4a4")}


def test_difference_of_differences_counts_each_example(tmp_path):
    """Seed 0: dot 60 -> 40 right (loses 20), inhibitor 60 -> 50 (loses 10): the inhibitor loses 10 fewer
    of 100; seed 1: both lose 10: 0. Pooled over 200 examples: +10 / 200 = +0.05."""
    fps = ledger(tmp_path, {("w8a8", 0): {"dot": range(60), "inhibitor": range(60)},
                            ("w4a4", 0): {"dot": range(40), "inhibitor": range(50)},
                            ("w8a8", 1): {"dot": range(70), "inhibitor": range(50)},
                            ("w4a4", 1): {"dot": range(60), "inhibitor": range(40)}})
    records = load_records(tmp_path)
    acc = accuracy_by_setting(records, fps)
    assert acc["w4a4"]["dot"]["mean"] == pytest.approx(0.5) and acc["w8a8"]["inhibitor"]["mean"] == pytest.approx(0.55)
    assert acc["w4a4"]["inhibitor"]["low"] < 0.45 < acc["w4a4"]["inhibitor"]["high"]
    first, second = paired_by_setting(records, fps)
    assert first["setting"] == "w8a8" and first["did"] is None
    assert second["vs_base"]["diff"] == pytest.approx(-0.05) and second["vs_base"]["n"] == 200
    assert second["did"]["diff"] == pytest.approx(0.05) and second["did"]["seeds"] == [0, 1]
    assert second["did"]["low"] <= 0.05 <= second["did"]["high"]
    (line,) = verdict([first, second])
    # at w4a4 the dot is right on 100 of 200 and the inhibitor on 90: neither above the 50 % of always
    # answering one label, so the difference of differences is a fall to the floor
    assert second["floor"] == {"variants": ["inhibitor", "dot"], "rate": 0.5}
    assert line.startswith("w4a4: does inhibitor lose less than the dot? not informative: inhibitor and dot not "
                           "above always answering the commonest label (50.00 %)")


def test_the_verdict_above_the_floor(tmp_path):
    """Both seeds: dot 90 -> 70 right, inhibitor 90 -> 80: the inhibitor loses 10 fewer of 100 (the examples
    70..79), both far above the 50 % floor (exact binomial, 140 of 200: p ~ 1e-8): yes."""
    fps = ledger(tmp_path, {(s, seed): {"dot": range(90 if s == "w8a8" else 70),
                                        "inhibitor": range(90 if s == "w8a8" else 80)}
                            for s in ("w8a8", "w4a4") for seed in (0, 1)})
    first, second = paired_by_setting(load_records(tmp_path), fps)
    assert second["floor"]["variants"] == [] and second["did"]["diff"] == pytest.approx(0.10)
    (line,) = verdict([first, second])
    assert line.startswith("w4a4: does inhibitor lose less than the dot? yes (+10.00 points")


@pytest.mark.parametrize("args, message", [
    (["--widths", "w2a2"], "unknown width setting 'w2a2'"),
    (["--widths", "int4"], "unknown width setting 'int4'"),
    (["--widths", "w8a8,w8a8"], "distinct width settings"),
    (["--no-record"], "drop --no-record"),
    (["--scenario", "no-such-scenario"], "no-such-scenario"),
])
def test_bad_requests_are_refused_before_any_work(tmp_path, capsys, args, message):
    from hwsim.app.cli import main
    assert main(["widths", "--out", str(tmp_path / "out"), "--results", str(tmp_path / "r"),
                 "--report", str(tmp_path / "rep"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in ("out", "r", "rep"))


TINY = ["--variants", "inhibitor", "--limit", 24, "--teacher-train-limit", 24, "--student-train-limit", 24,
        "--qat-train-limit", 24, "--max-length", 12, "--teacher-epochs", 1, "--student-epochs", 1,
        "--student-batch-size", 4, "--qat-batch-size", 4, "--ort-check", 2, "--widths", "w8a8,w4a4",
        "--scenario", "today", "--lengths", "12,16"]


def test_tiny_sweep_shares_the_float_stages_and_reports(tmp_path):
    args = ["widths", "--out", str(tmp_path / "out"), "--results", str(tmp_path / "results"),
            "--report", str(tmp_path / "report"), *map(str, TINY)]
    done = run_cli(args, timeout=1200)  # two settings' QAT, exports and simulations
    assert done.returncode == 0, done.stderr[-3000:]
    records = [r for _, r in load_records(tmp_path / "results")]
    assert len(records) == 2 and len({r["recipe"]["fingerprint"] for r in records}) == 2
    assert all(v["int8"]["hwsim_equals_qat"] for r in records for v in r["variants"].values())
    stages = {p.stem for p in (tmp_path / "out" / "seed0" / "stages").glob("*.json")}
    assert {"teacher", "float-inhibitor", "int8-inhibitor", "int4-inhibitor", "export-inhibitor",
            "export-int4-inhibitor", "simulate-int4-inhibitor"} <= stages
    # one teacher, one float student each: the second setting read them from the first's
    assert records[0]["teacher"] == records[1]["teacher"]
    assert records[0]["variants"]["inhibitor"]["float"] == records[1]["variants"]["inhibitor"]["float"]
    rows = list(csv.DictReader((tmp_path / "report" / "widths.csv").open()))
    assert len(rows) == 2 * 2 and {r["setting"] for r in rows} == {"w8a8", "w4a4"}
    w8 = {r["variant"]: float(r["energy_uJ"]) for r in rows if r["setting"] == "w8a8" and r["seq_len"] == "16"}
    w4 = {r["variant"]: float(r["energy_uJ"]) for r in rows if r["setting"] == "w4a4" and r["seq_len"] == "16"}
    assert all(w4[v] < w8[v] for v in w8)  # narrower arithmetic and words cost less
    for name in ("widths.md", "pareto-today.png", "attention-width.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    again = run_cli(args, timeout=600)  # everything cached, the records known: nothing recomputed, nothing added
    assert again.returncode == 0 and len(load_records(tmp_path / "results")) == 2
    started = [line for line in again.stdout.splitlines() if " ... ETA" in line]
    assert not started and again.stdout.count(": cached (it took") == 2 * 6  # 6 stages per setting
