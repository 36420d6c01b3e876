"""The demo pipeline on a tiny configuration: real MiniLM teacher, a handful of RT snippets.

Checks that every output exists, that the report is internally consistent (components add up to
the total; the total equals counts x energy table recomputed from the raw run reports; the
summary's numbers come from report.json), and that a second run reuses the cached artefacts.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from hwsim.demo import VARIANTS, DemoConfig, run_demo
from hwsim.demo_report import check_consistency
from hwsim.energy import load_table

TINY = dict(limit=12, teacher_train_limit=12, student_train_limit=12, qat_train_limit=12, max_length=12,
            ort_check=2, sweep_lengths=(8, 16))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = run_demo(DemoConfig(out=str(out), **TINY))
    return out, result


def test_demo_writes_every_output(demo):
    out, result = demo
    for name in ("report.json", "report.csv", "summary.md", "energy_breakdown.png", "energy_vs_seq_len.png",
                 "attention_energy_vs_seq_len.png", "scenarios.csv", "energy_vs_seq_len_by_scenario.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert set(result["variants"]) == set(VARIANTS)
    for v in VARIANTS:
        assert (out / "models" / f"{v}-w8.onnx").is_file()
        row = result["variants"][v]
        assert row["ort_checked"] == 2
        assert row["test_samples"] == 12
        # hwsim runs the integer graph, QAT evaluation the fake-quant model: same predictions
        assert row["int8_accuracy_hwsim"] == pytest.approx(row["int8_accuracy_qat_eval"])
    assert not list(out.rglob("*.part"))
    # every packaged scenario x variant x sweep length in the scenario table, and in the summary
    from hwsim.cost.scenario import packaged_names
    cells = {(r["scenario"], r["variant"], int(r["seq_len"])) for r in result["scenarios"]}
    assert cells == {(s, v, n) for s in packaged_names() for v in VARIANTS for n in TINY["sweep_lengths"]}
    assert "On accelerator scenarios" in (out / "summary.md").read_text()
    # the paired test counts the test snippets where exactly one of the two int8 models is right
    from quant.data.tasks import load_split
    gold = load_split("rt", "test", limit=TINY["limit"]).labels
    pred = {v: json.loads((out / "reports" / f"{v}.json").read_text())["predictions"] for v in ("inhibitor", "dot")}
    m = result["mcnemar_inhibitor_vs_dot"]
    assert m["n"] == 12 and m["a_right_b_wrong"] == sum(
        int(i == g != d) for i, d, g in zip(pred["inhibitor"], pred["dot"], gold))
    assert "McNemar" in (out / "summary.md").read_text() and "Float teacher" in (out / "summary.md").read_text()
    assert (out / "runs" / "float-dot" / "metrics.json").is_file()  # the ReLU dot student


def test_report_is_internally_consistent(demo):
    out, result = demo
    saved = json.loads((out / "report.json").read_text())
    reports = {v: out / "reports" / f"{v}.json" for v in VARIANTS}
    check_consistency(saved, reports, load_table())
    with open(out / "report.csv") as fh:
        rows = list(csv.DictReader(fh))
    for v in VARIANTS:
        total = [float(r["energy_pj"]) for r in rows if r["variant"] == v and r["group"] == "total"]
        layers = sum(float(r["energy_pj"]) for r in rows if r["variant"] == v and r["group"] == "layer")
        assert total and layers == pytest.approx(total[0], rel=1e-5)
        assert saved["variants"][v]["energy_pj"]["total"] == pytest.approx(total[0], rel=1e-5)
    assert saved["variants"]["inhibitor"]["attention_share_arithmetic"] > 0


def attention_actions(report: Path) -> list[set[str]]:
    """Per attention node of a run report: the actions it counts (`mul`, `add`, ...), widths dropped."""
    counts = json.loads(report.read_text())["counts"]
    return [{key.split("@")[0] for key in counts["per_node"][node]}
            for node, op in counts["node_op"].items() if op.endswith("Attention")]


def test_inhibitor_attention_has_no_multiplications_and_dot_attention_has(demo):
    out, _ = demo
    inhibitor, dot = (attention_actions(out / "reports" / f"{v}.json") for v in ("inhibitor", "dot"))
    assert inhibitor and all("mul" not in actions and "abs" in actions for actions in inhibitor)
    assert dot and all("mul" in actions for actions in dot)


def test_summary_numbers_come_from_the_report(demo):
    out, result = demo
    text = (out / "summary.md").read_text()
    assert "estimates from operation counts" in text
    for v in VARIANTS:
        total_nj = result["variants"][v]["energy_pj"]["total"] / 1e3
        assert f"| {v} |" in text and f"{total_nj:.0f}" in text
    # every Markdown table: delimiter row right under the header, all rows with the header's cell count
    lines = text.splitlines()
    heads = [i for i, ln in enumerate(lines) if ln.startswith("|---")]
    assert len(heads) == 4   # variants, sweep, scenario table, inhibitor/dot ratios
    for i in heads:
        width = lines[i - 1].count("|")
        assert lines[i].count("|") == width
        j = i + 1
        while j < len(lines) and lines[j].startswith("|"):
            assert lines[j].count("|") == width, lines[j]
            j += 1


def test_second_run_reuses_cache(demo):
    out, _ = demo
    stamp = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("metrics.json")}
    models = {p: p.stat().st_mtime_ns for p in (out / "models").glob("*.onnx")}
    run_demo(DemoConfig(out=str(out), **TINY))
    assert stamp == {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("metrics.json")}
    assert models == {p: p.stat().st_mtime_ns for p in (out / "models").glob("*.onnx")}
