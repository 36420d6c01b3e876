"""Price run reports and summarise them per layer, per op type and per component.

A run report (written by `hwsim run`) is JSON: `model`, `meta` (with `attention`, the variant),
`samples`, `seq_lens`, `accuracy`, `counts` = {`per_node`: {node: {action@width: count}} summed
over samples, `node_op`: {node: op_type}, `node_layer`: {node: layer}}, optionally `widths`.
Everything here is per inference (= per sample): summed counts divided by `samples`.
"""
from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from hwsim.cost.energy import COMPONENTS, MEMORY, EnergyTable, price_by_component
from models.errors import UserError

REQUIRED = ("model", "meta", "samples", "seq_lens", "accuracy", "counts")
REQUIRED_COUNTS = ("per_node", "node_op", "node_layer")
CSV_COLUMNS = ("variant", "model", "group", "name", "ops", "memory_words", "energy_pj")


@dataclass(frozen=True)
class RunReport:
    label: str
    model: str
    samples: int
    mean_seq_len: float
    accuracy: float | None
    per_node: Mapping[str, Mapping[str, int]]
    node_op: Mapping[str, str]
    node_layer: Mapping[str, str]


def load_run_report(path: str | Path) -> RunReport:
    """Read and validate a run report; `UserError` names the missing or malformed field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"run report {path} not found; write one with `hwsim run`") from None
    except json.JSONDecodeError as err:
        raise UserError(f"run report {path} is not valid JSON: {err}") from None
    where = f"run report {path}"
    if not isinstance(data, dict):
        raise UserError(f"{where} must hold a JSON object")
    missing = [k for k in REQUIRED if k not in data]
    counts = data.get("counts")
    if isinstance(counts, dict):
        missing += [f"counts.{k}" for k in REQUIRED_COUNTS if not isinstance(counts.get(k), dict)]
    elif "counts" in data:
        missing.append("counts (an object)")
    if not isinstance(data.get("meta"), dict) or "attention" not in data["meta"]:
        missing.append("meta.attention")
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)}; regenerate it with `hwsim run`")
    samples = data["samples"]
    if isinstance(samples, bool) or not isinstance(samples, int) or samples <= 0:
        raise UserError(f"{where}: samples must be a positive integer, got {samples!r}")
    per_node, node_op, node_layer = (counts[k] for k in REQUIRED_COUNTS)
    unlabelled = sorted(n for n in per_node if n not in node_op or n not in node_layer)
    if unlabelled:
        raise UserError(f"{where}: nodes {unlabelled[:5]} have counts but no counts.node_op/node_layer entry")
    lens = data["seq_lens"] or []
    return RunReport(label=str(data["meta"]["attention"]), model=str(data["model"]), samples=samples,
                     mean_seq_len=sum(lens) / len(lens) if lens else 0.0, accuracy=data["accuracy"],
                     per_node=per_node, node_op=node_op, node_layer=node_layer)


@dataclass(frozen=True)
class Summary:
    """Per-inference figures of one report: `{group: {name: (ops, memory_words, pJ)}}` for groups
    layer, op_type, component and total."""

    report: RunReport
    groups: Mapping[str, Mapping[str, tuple[float, float, float]]]

    def energy(self, group: str) -> dict[str, float]:
        return {name: v[2] for name, v in self.groups[group].items()}


def summarise(report: RunReport, table: EnergyTable) -> Summary:
    """Price every node of a report; raises `UserError` for keys missing from the table (all of
    them at once)."""
    priced = price_by_component(report.per_node, report.node_op, table)
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0, 0.0]))
    for node, counts in report.per_node.items():
        energy = priced[node]
        for key, pj in energy.pj.items():
            comp = energy.component_of(key)
            mem = comp == MEMORY
            for group, name in (("layer", report.node_layer[node]), ("op_type", report.node_op[node]),
                                ("component", comp), ("total", "total")):
                cell = acc[group][name]
                cell[1 if mem else 0] += counts[key] / report.samples
                cell[2] += pj / report.samples
    groups = {g: {name: tuple(v) for name, v in rows.items()} for g, rows in acc.items()}
    return Summary(report, groups)


def label_variants(reports: list[RunReport], paths: list[str]) -> list[RunReport]:
    """Use meta.attention as the label; disambiguate duplicates with the file name."""
    labels = [r.label for r in reports]
    out = []
    for r, p in zip(reports, paths):
        label = r.label if labels.count(r.label) == 1 else f"{r.label}:{Path(p).stem}"
        out.append(replace(r, label=label))
    return out


def format_tables(summaries: list[Summary], table: EnergyTable) -> str:
    """Side-by-side text tables: energy (nJ) and arithmetic actions per inference."""
    labels = [s.report.label for s in summaries]
    lines = [f"Energy per inference, estimated from op counts with {table.path} ({table.technology}); "
             "not a measurement.",
             "variant: " + "  ".join(f"{s.report.label} (model {s.report.model}, {s.report.samples} samples, "
                                     f"mean {s.report.mean_seq_len:.1f} tokens, accuracy {s.report.accuracy})"
                                     for s in summaries)]
    head = f"{'':24}" + "".join(f"{lab[:14] + ' nJ':>18}{lab[:10] + ' Mops':>16}" for lab in labels)
    for group in ("layer", "op_type", "component", "total"):
        names: list[str] = []
        for s in summaries:
            names += [n for n in s.groups.get(group, {}) if n not in names]
        if group == "component":
            names = [c for c in COMPONENTS if c in names]
        lines += ["", f"by {group}", head]
        for name in names:
            cells = "".join(f"{s.groups.get(group, {}).get(name, (0, 0, 0))[2] / 1e3:18.3f}"
                            f"{s.groups.get(group, {}).get(name, (0, 0, 0))[0] / 1e6:16.4g}" for s in summaries)
            lines.append(f"{name[:24]:24}{cells}")
    return "\n".join(lines) + "\n"


def csv_text(summaries: list[Summary]) -> str:
    """Long-format CSV: one row per (variant, group, name), figures per inference."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in summaries:
        for group in ("layer", "op_type", "component", "total"):
            for name, (ops, words, pj) in s.groups.get(group, {}).items():
                writer.writerow([s.report.label, s.report.model, group, name, f"{ops:.6g}", f"{words:.6g}", f"{pj:.6g}"])
    return buf.getvalue()
