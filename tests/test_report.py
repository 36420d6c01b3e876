"""`hwsim report` on two small hand-made run reports: tables, CSV, PNG; errors leave no file."""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest

from hwsim.app import report_cli
from hwsim.cost.energy import DEFAULT_TABLE, load_table, total_pj
from models.errors import UserError

GOLDEN = Path(__file__).parent / "golden"


def make_report(tmp_path: Path, kind: str, variant: str) -> Path:
    """A run report in `hwsim run`'s format whose counts are the golden encoder's (batch 2)."""
    golden = json.loads((GOLDEN / f"encoder_{kind}.json").read_text())
    data = {"model": "tiny", "meta": {"attention": variant}, "samples": golden["batch"], "seq_lens": [6, 6],
            "accuracy": 0.5, "widths": {},
            "counts": {k: golden[k] for k in ("per_node", "node_op", "node_layer")}}
    path = tmp_path / f"{variant}.json"
    path.write_text(json.dumps(data))
    return path


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    return report_cli.run(parser.parse_args(argv))


def test_report_writes_csv_and_png(tmp_path, capsys):
    a = make_report(tmp_path, "DotAttention", "dot")
    b = make_report(tmp_path, "InhibitorAttention", "inhibitor")
    out_csv, out_png = tmp_path / "out" / "e.csv", tmp_path / "out" / "e.png"
    assert run([str(a), str(b), "--csv", str(out_csv), "--plot", str(out_png)]) == 0
    text = capsys.readouterr().out
    assert "by layer" in text and "by op_type" in text and "InhibitorAttention" in text and "not a measurement" in text
    rows = list(csv.DictReader(out_csv.open()))
    assert {r["variant"] for r in rows} == {"dot", "inhibitor"}
    table = load_table()
    per_node = json.loads(a.read_text())["counts"]["per_node"]
    expect = sum(total_pj(c, table) for c in per_node.values()) / 2
    total = next(r for r in rows if r["variant"] == "dot" and r["group"] == "total")
    assert float(total["energy_pj"]) == pytest.approx(expect, rel=1e-5)
    comps = [r for r in rows if r["variant"] == "dot" and r["group"] == "component"]
    assert sum(float(r["energy_pj"]) for r in comps) == pytest.approx(expect, rel=1e-5)
    assert {r["name"] for r in comps} >= {"linear", "attention", "normalisation", "embedding", "memory"}
    import matplotlib.image

    img = matplotlib.image.imread(out_png)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert not list((tmp_path / "out").glob(".*part"))


def test_missing_table_entry_leaves_no_output(tmp_path):
    a = make_report(tmp_path, "InhibitorAttention", "inhibitor")
    lines = DEFAULT_TABLE.read_text().splitlines()
    short = tmp_path / "short.csv"
    short.write_text("\n".join(ln for ln in lines if not ln.startswith("abs,9,")) + "\n")
    out_csv, out_png = tmp_path / "e.csv", tmp_path / "e.png"
    with pytest.raises(UserError, match="abs@9") as err:
        run([str(a), "--energy-table", str(short), "--csv", str(out_csv), "--plot", str(out_png)])
    assert err.value.exit_code == 2
    assert not out_csv.exists() and not out_png.exists()
    assert [p.name for p in tmp_path.iterdir() if p.suffix not in (".json",)] == ["short.csv"]


def test_report_missing_field(tmp_path):
    a = make_report(tmp_path, "DotAttention", "dot")
    data = json.loads(a.read_text())
    del data["counts"]["node_layer"], data["samples"]
    a.write_text(json.dumps(data))
    out_csv = tmp_path / "e.csv"
    with pytest.raises(UserError, match="samples, counts.node_layer"):
        run([str(a), "--csv", str(out_csv)])
    assert not out_csv.exists()
