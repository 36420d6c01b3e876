"""The demo pipeline on a tiny configuration: real MiniLM teacher, a handful of RT snippets.

Checks that every output exists, that the report is internally consistent (components add up to
the total; the total equals counts x energy table recomputed from the raw run reports; the
summary's numbers come from report.json), that a second run reuses the cached artefacts and that a
run with a changed setting recomputes the stages it changes and no other.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from dataclasses import replace

import pytest

from hwsim.sim.actions import ActionKey
from hwsim.app.demo import DemoConfig, run_demo, scenario_lengths
from hwsim.app.demo_report import check_consistency
from hwsim.cost.energy import load_table
from hwsim.app.study import StudyConfig
from models.variants import names as variant_names

RECIPE = StudyConfig.cut(limit=12, teacher_train_limit=12, student_train_limit=12, qat_train_limit=12, max_length=12)
TINY = dict(recipe=RECIPE, ort_check=2, sweep_lengths=(8, 16))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = run_demo(DemoConfig(out=str(out), **TINY), results=out / "results")
    return out, result


def test_demo_writes_every_output(demo):
    out, result = demo
    for name in ("report.json", "report.csv", "summary.md", "energy_breakdown.png", "energy_vs_seq_len.png",
                 "attention_energy_vs_seq_len.png", "scenarios.csv", "energy_vs_seq_len_by_scenario.png",
                 "energy_split_edge.png", "accuracy_vs_energy.png", "attention_share_vs_seq_len.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert set(result["variants"]) == set(variant_names())
    for v in variant_names():
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
    lengths = scenario_lengths(DemoConfig(**TINY), result["variants"]["dot"]["mean_tokens"])
    assert round(result["variants"]["dot"]["mean_tokens"]) in lengths and set(TINY["sweep_lengths"]) <= set(lengths)
    assert cells == {(s, v, n) for s in packaged_names() for v in variant_names() for n in lengths}
    assert "On accelerator scenarios" in (out / "summary.md").read_text()
    # the paired test counts the test snippets where exactly one of the two int8 models is right
    from quant.data.tasks import load_split
    gold = load_split("rt", "test", limit=RECIPE.limit).labels
    pred = {v: json.loads((out / "reports" / f"{v}.json").read_text())["predictions"] for v in variant_names()}
    assert result["mcnemar_inhibitor_vs_dot"] == result["mcnemar_vs_dot"]["inhibitor"]
    for v in ("inhibitor", "symmetric"):
        m = result["mcnemar_vs_dot"][v]
        assert m["n"] == 12 and m["a_right_b_wrong"] == sum(
            int(i == g != d) for i, d, g in zip(pred[v], pred["dot"], gold))
        assert m["a_wrong_b_right"] == sum(int(d == g != i) for i, d, g in zip(pred[v], pred["dot"], gold))
    assert "McNemar" in (out / "summary.md").read_text() and "Float teacher" in (out / "summary.md").read_text()
    assert (out / "runs" / "float-dot" / "metrics.json").is_file()  # the ReLU dot student


def test_report_is_internally_consistent(demo):
    out, result = demo
    saved = json.loads((out / "report.json").read_text())
    reports = {v: out / "reports" / f"{v}.json" for v in variant_names()}
    check_consistency(saved, reports, load_table())
    with open(out / "report.csv") as fh:
        rows = list(csv.DictReader(fh))
    for v in variant_names():
        total = [float(r["energy_pj"]) for r in rows if r["variant"] == v and r["group"] == "total"]
        layers = sum(float(r["energy_pj"]) for r in rows if r["variant"] == v and r["group"] == "layer")
        assert total and layers == pytest.approx(total[0], rel=1e-5)
        assert saved["variants"][v]["energy_pj"]["total"] == pytest.approx(total[0], rel=1e-5)
    assert saved["variants"]["inhibitor"]["attention_share_arithmetic"] > 0


def attention_actions(report: Path) -> list[set[str]]:
    """Per attention node of a run report: the actions it counts (`mul`, `add`, ...), widths dropped."""
    counts = json.loads(report.read_text())["counts"]
    return [{ActionKey.parse(key).action for key in counts["per_node"][node]}
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
    for v in variant_names():
        total_nj = result["variants"][v]["energy_pj"]["total"] / 1e3
        assert f"| {v} |" in text and f"{total_nj:.0f}" in text
    # every Markdown table: delimiter row right under the header, all rows with the header's cell count
    lines = text.splitlines()
    heads = [i for i, ln in enumerate(lines) if ln.startswith("|---")]
    # the answer, accuracy, scenario excerpt, inhibitor/dot ratios, op-count variants, sweep
    assert len(heads) == 6
    for i in heads:
        width = lines[i - 1].count("|")
        assert lines[i].count("|") == width
        j = i + 1
        while j < len(lines) and lines[j].startswith("|"):
            assert lines[j].count("|") == width, lines[j]
            j += 1


def test_summary_opens_with_the_answer(demo):
    out, result = demo
    lines = (out / "summary.md").read_text().splitlines()
    heads = [i for i, ln in enumerate(lines) if ln.startswith("#")]
    assert heads[0] < 3 and "answer" in lines[heads[0]].lower()
    assert heads[1] - heads[0] - 1 < 15, lines[heads[0]:heads[1]]
    answer = "\n".join(lines[heads[0]:heads[1]])
    # one table row per mapped scenario, each cell at the test split's mean length and the longest length
    mean, longest = result["answer"]["lengths"]
    assert mean == round(result["variants"]["dot"]["mean_tokens"]) and longest == max(TINY["sweep_lengths"])
    from hwsim.cost.scenario import load_scenario, packaged_names
    mapped = [n for n in packaged_names() if load_scenario(n).kind == "mapped"]
    assert sorted(r["scenario"] for r in result["answer"]["rows"]) == sorted(mapped * 2)
    for name in mapped:
        assert f"| {name} |" in answer
    # the answer's figures are the scenario table's: dot's energy, the inhibitor's ratio
    csv_rows = {(r["scenario"], r["variant"], int(r["seq_len"])): r for r in result["scenarios"]}
    for row in result["answer"]["rows"]:
        dot = float(csv_rows[(row["scenario"], "dot", row["seq_len"])]["energy_uJ"])
        inh = float(csv_rows[(row["scenario"], "inhibitor", row["seq_len"])]["energy_uJ"])
        assert row["base_energy_uJ"] == pytest.approx(dot, rel=1e-5)
        assert row["energy"]["inhibitor"] == pytest.approx(inh / dot, rel=1e-4)
    for v in ("inhibitor", "symmetric"):
        assert f"McNemar p = {result['mcnemar_vs_dot'][v]['p_value']:.2g}" in answer
    # the energy split adds up to the scenario table's energy, by where and by component alike
    for title, bars in result["answer"]["energy_split_pj"].items():
        scenario, n = title.split(",")[0], int(title.split(", ")[1].split()[0])
        for v, parts in bars.items():
            assert sum(parts.values()) / 1e6 == pytest.approx(float(csv_rows[(scenario, v, n)]["energy_uJ"]), rel=1e-5)


def test_every_plot_the_summary_names_is_a_png(demo):
    out, _ = demo
    text = (out / "summary.md").read_text()
    names = set(re.findall(r"[\w.-]+\.png", text))
    assert {"energy_split_edge.png", "accuracy_vs_energy.png", "attention_share_vs_seq_len.png",
            "energy_breakdown.png"} <= names
    for name in names:
        data = (out / name).read_bytes()
        assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n", name
    # the first picture is the mapped scenario's energy split, not the op-count view's
    assert re.search(r"\(([\w.-]+\.png)\)", text).group(1) == "energy_split_edge.png"


def outputs(out: Path) -> dict[str, int]:
    """Modification times of every stage's output (run metrics, models, reports), by stage."""
    files = {f"{p.parent.name}": p for p in (out / "runs").glob("*/metrics.json")}
    files |= {f"export-{p.stem.split('-')[0]}": p for p in (out / "models").glob("*.onnx")}
    files |= {f"simulate-{v}": out / "reports" / f"{v}.json" for v in variant_names()}
    files["predict-teacher"] = out / "reports" / "teacher-predictions.json"
    return {name: p.stat().st_mtime_ns for name, p in files.items()}


def test_second_run_reuses_cache(demo, capsys):
    out, _ = demo
    before = outputs(out)
    assert len(before) == 2 + 3 * 4  # teacher and its predictions; per variant float, int8, export, simulate
    run_demo(DemoConfig(out=str(out), **TINY))
    assert outputs(out) == before
    assert capsys.readouterr().out.count(": cached") == len(before)


def test_demo_writes_a_ledger_record(demo):
    """The finished run appends one record: provenance, sizes, times, accuracies and hwsim's predictions."""
    from hwsim.app.ledger import REQUIRED, SCHEMA, load_records, unpack_labels
    from quant.data.tasks import load_split

    out, result = demo
    (path, record), = load_records(out / "results")
    assert set(REQUIRED) <= set(record) and record["schema"] == SCHEMA and record["seed"] == 0
    assert path.name.endswith(f"-{record['recipe']['fingerprint']}-seed0-{path.stem.rsplit('-', 1)[1]}.json")
    assert record["commit"] != "unknown" and len(record["recipe"]["fingerprint"]) == 12
    assert {k: record["data"][k] for k in ("validation", "test")} == {"validation": 12, "test": 12}
    assert set(record["stage_s"]) >= {"teacher", "predict-teacher", *(f"{s}-{v}" for s in ("float", "int8", "export", "simulate")
                                                                     for v in variant_names()), "sweep", "scenarios", "report", "total"}
    assert record["machine"]["cpu_count"] and record["machine"]["torch"]
    assert unpack_labels(record["test_labels"]) == list(load_split("rt", "test", limit=12).labels)
    assert record["teacher"]["test_accuracy"] == result["teacher_accuracy"]
    teacher = json.loads((out / "reports" / "teacher-predictions.json").read_text())
    assert unpack_labels(record["teacher"]["test_predictions"]) == teacher["predictions"]
    assert teacher["accuracy"] == result["teacher_accuracy"]
    for v in variant_names():
        row, hw = record["variants"][v], json.loads((out / "reports" / f"{v}.json").read_text())
        assert unpack_labels(row["test_predictions"]) == hw["predictions"]
        assert row["int8"]["test_accuracy_hwsim"] == result["variants"][v]["int8_accuracy_hwsim"]
        assert row["int8"]["hwsim_equals_qat"] is True
        assert 0 <= row["float"]["validation_accuracy"] <= 1 and 0 <= row["int8"]["validation_accuracy"] <= 1
    # a finished demo folder imported (as those made before the demo wrote records): the same record
    # but for the teacher's predictions, which such a folder lacks
    from hwsim.app.ledger import import_demo
    imported = json.loads(import_demo(out, out / "imported", "HEAD", None).read_text())
    assert imported["teacher"] == {**record["teacher"], "test_predictions": None}
    differ = {"created", "stage_s", "machine", "commit", "teacher", "note"}
    assert {k: v for k, v in imported.items() if k not in differ} == {k: v for k, v in record.items() if k not in differ}


def test_changed_setting_recomputes_what_it_changes(demo):
    """A QAT setting changes the int8 runs and what is made from them, not the teacher or the float
    students (`hwsim demo` then `hwsim demo` with other settings into one folder). Last: it changes
    the folder the tests above read."""
    out, _ = demo
    before = outputs(out)
    result = run_demo(DemoConfig(out=str(out), **{**TINY, "recipe": replace(RECIPE, qat_train_limit=8)}))
    after = outputs(out)
    changed = {name for name in before if after[name] != before[name]}
    assert changed == {f"{stage}-{v}" for stage in ("int8", "export", "simulate") for v in variant_names()}
    for v in variant_names():
        metrics = json.loads((out / "runs" / f"int8-{v}" / "metrics.json").read_text())
        assert metrics["config"]["train_limit"] == 8
        assert result["variants"][v]["int8_accuracy_hwsim"] == pytest.approx(result["variants"][v]["int8_accuracy_qat_eval"])
