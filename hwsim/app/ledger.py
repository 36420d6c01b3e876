"""The results ledger: one small JSON record per finished run, one file per record under `results/`.

A record says which commit and which settings made it, how long each stage took on which machine,
the float and int8 accuracies of every variant, and every variant's int8 test predictions (hwsim's,
bit-exact) packed as a hex string, one digit per test example in the order of the test split, next to
the gold labels and the float teacher's predictions packed the same way, so paired tests over seeds
can be recomputed later (`hwsim results`, `hwsim.app.ledger_stats`). `hwsim study` writes one record per
seed, `hwsim demo` one per run (`seed_record`).

Record (schema `hwsim-ledger/2`; `hwsim-ledger/1` records are read as well):

| key | value |
|---|---|
| schema, kind | "hwsim-ledger/2", "study" or "demo" |
| created | UTC time the record was written, ISO 8601 |
| commit | `git rev-parse HEAD` of the project, "+dirty" appended when tracked files differ; "unknown" outside git |
| recipe | {"fingerprint": 12 hex digits, "settings": what was hashed} |
| seed, task | the run's seed and task |
| data | {"train", "validation", "test"}: split sizes; "train_used": {stage: snippets trained on} |
| stage_s | {stage: seconds} (`hwsim.app.study` stage names; the demo adds its energy steps), "total" included; "train_runs": {run: seconds of its training loop} from the runs' metrics |
| machine | {"platform", "cpu_count", "torch", "threads", "python"} |
| teacher | {"validation_accuracy", "test_accuracy", "test_predictions": hex, or null where not kept} |
| variants | {variant: {"float": {"validation_accuracy", "test_accuracy"}, "int8": {"validation_accuracy", "test_accuracy_qat", "test_accuracy_hwsim", "hwsim_equals_qat"}, "test_predictions": hex}}; a study may run a subset of the variants |
| test_labels | hex, the test split's gold labels |

What /2 adds to /1: kind "study", stage times per stage, the teacher's predictions (records of /1 and
imported demo folders have none: null). A stage cached from an earlier invocation reports the seconds
it took when it ran (its marker's, `hwsim.app.stages`); a stage resumed after a kill, those of the
invocation that finished it.

`hwsim_equals_qat` is true when hwsim's bit-exact run and the QAT evaluation get the same number of
test examples right (the QAT evaluation keeps no per-example predictions).

The fingerprint hashes the recipe (`hwsim.app.study.StudyConfig`, `recipe_of`) without its task, under
the key "demo", beside the task and the split sizes: exactly what the demo hashed before the study
existed (its flat configuration without `NOT_RECIPE`: output folder, --force, the seed, which is
recorded by itself, the onnxruntime cross-check count and the energy sweep lengths), so a record of
`hwsim demo --full` and `hwsim study` records of the same settings share one fingerprint and pool.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from models.errors import UserError
from models.settings import hashed

SCHEMA = "hwsim-ledger/2"
SCHEMAS = ("hwsim-ledger/1", SCHEMA)  # read
NOT_RECIPE = ("out", "force", "seed", "ort_check", "sweep_lengths")
REQUIRED = ("schema", "kind", "created", "commit", "recipe", "seed", "task", "data", "stage_s", "machine",
            "teacher", "variants", "test_labels")
ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- packing

def pack_labels(labels) -> str:
    """Class ids 0..15 -> one hex digit each, in order (a ValueError outside 0..15).

    >>> pack_labels([0, 1, 1, 10])
    '011a'
    """
    out = []
    for x in labels:
        x = int(x)
        if not 0 <= x < 16:
            raise ValueError(f"class id {x} does not fit one hex digit (0..15)")
        out.append("0123456789abcdef"[x])
    return "".join(out)


def unpack_labels(text: str) -> list[int]:
    """The inverse of `pack_labels`."""
    return [int(c, 16) for c in text]


# ---------------------------------------------------------------- provenance

def git_commit(root: Path = ROOT, rev: str = "HEAD") -> str:
    """Full hash of `rev`, "+dirty" when `rev` is HEAD and tracked files differ; "unknown" outside git."""
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", rev], capture_output=True, text=True,
                             check=True).stdout.strip()
        if rev != "HEAD":
            return sha
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def replay_warning(commit: str) -> str | None:
    """What a record of `commit` (`git_commit()`) cannot say about its code, or None when it names it.

    >>> replay_warning("0" * 40) is None
    True
    >>> replay_warning("unknown").split(":")[0]
    'not in a git checkout'
    """
    if commit == "unknown":
        return ("not in a git checkout: the records will say commit 'unknown' and cannot be replayed; "
                "run from a clone (git clone, git worktree) of the project")
    if commit.endswith("+dirty"):
        return ("tracked files differ from the commit: the records will say '+dirty' and cannot be replayed "
                "exactly; commit first")
    return None


def machine() -> dict:
    """Where the run ran: platform, cores, torch version and its thread count (None without torch)."""
    try:
        import torch
        torch_version, threads = torch.__version__, torch.get_num_threads()
    except ImportError:
        torch_version, threads = None, None
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch_version,
            "threads": threads, "python": platform.python_version()}


def recipe(config: dict, task: str, data: dict) -> dict:
    """{"fingerprint", "settings"}: the settings that decide the accuracies, hashed."""
    settings = {"task": task, "demo": {k: v for k, v in config.items() if k not in NOT_RECIPE}, "data": data}
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return {"fingerprint": hashlib.sha256(text.encode()).hexdigest()[:12], "settings": settings}


# ---------------------------------------------------------------- a seed's record

def recipe_of(cfg) -> dict:
    """The recipe fingerprint of a `hwsim.app.study.StudyConfig` (its fields but the task, which is hashed
    beside them, as the demo's flat configuration was), its task and split sizes."""
    settings = {k: v for k, v in hashed(cfg).items() if k != "task"}
    return recipe(settings, cfg.task, data_sizes(cfg))


def data_sizes(cfg) -> dict:
    """Split sizes (after the tests' `limit`) and how many training snippets each stage used."""
    from quant.data.tasks import load_split

    sizes = {s: len(load_split(cfg.task, s, limit=cfg.limit)) for s in ("train", "validation", "test")}
    used = {stage: min(sizes["train"], lim) if lim is not None else sizes["train"]
            for stage, lim in (("teacher", cfg.teacher_train_limit), ("student", cfg.student_train_limit),
                               ("qat", cfg.qat_train_limit))}
    return {**sizes, "train_used": used}


def seed_record(kind: str, cfg, seed: int, metrics: dict, reports: dict, teacher_predictions: list | None,
                stage_s: dict, commit: str | None = None, host: dict | None = None) -> dict:
    """The record of one finished seed: `cfg` its `StudyConfig`, `metrics` {run name: metrics.json}
    ("float-dot" falls back to the teacher's), `reports` {variant: hwsim run report path} and the
    teacher's test predictions (None where they were not kept)."""
    from quant.data.tasks import load_split

    labels = load_split(cfg.task, "test", limit=cfg.limit).labels
    variants = {}
    for v, path in reports.items():
        run = json.loads(Path(path).read_text())
        if len(run["predictions"]) != len(labels):
            raise UserError(f"{path}: {len(run['predictions'])} predictions for {len(labels)} test snippets; "
                            "rerun with --force")
        n, qat, hw = len(labels), metrics[f"{cfg.quant_tag}-{v}"]["test"]["accuracy"], run["accuracy"]
        fl = metrics.get(f"float-{v}", metrics["teacher"])
        variants[v] = {
            "float": {"validation_accuracy": fl["validation"]["accuracy"], "test_accuracy": fl["test"]["accuracy"]},
            "int8": {"validation_accuracy": metrics[f"{cfg.quant_tag}-{v}"]["validation"]["accuracy"],
                     "test_accuracy_qat": qat, "test_accuracy_hwsim": hw,
                     "hwsim_equals_qat": round(qat * n) == round(hw * n)},
            "test_predictions": pack_labels(run["predictions"])}
    teacher = metrics["teacher"]
    return {"schema": SCHEMA, "kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": commit or git_commit(), "recipe": recipe_of(cfg), "seed": seed, "task": cfg.task,
            "data": data_sizes(cfg),
            "stage_s": {**stage_s, "train_runs": {k: m.get("train_seconds") for k, m in metrics.items()}},
            "machine": host or machine(),
            "teacher": {"validation_accuracy": teacher["validation"]["accuracy"],
                        "test_accuracy": teacher["test"]["accuracy"],
                        "test_predictions": None if teacher_predictions is None else pack_labels(teacher_predictions)},
            "variants": variants, "test_labels": pack_labels(labels)}


def record_name(record: dict) -> str:
    """`<UTC date-time>-<fingerprint>-seed<seed>-<content hash>.json`: records never collide."""
    stamp = re.sub(r"[-:]", "", record["created"]).rstrip("Z")
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:6]
    return f"{stamp}-{record['recipe']['fingerprint']}-seed{record['seed']}-{digest}.json"


def write_record(record: dict, results: Path) -> Path:
    """Write `record` as a new file in `results` (created); never overwrites."""
    check_record(record, "the new record")
    results.mkdir(parents=True, exist_ok=True)
    path = results / record_name(record)
    tmp = path.with_suffix(".part")
    try:
        tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        os.link(tmp, path)  # complete or absent; never replaces an existing record
    except FileExistsError:
        raise UserError(f"{path} exists already; records are never overwritten") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def same_run(a: dict, b: dict) -> bool:
    """Records of one run: equal but for when they were written and the stage times."""
    def strip(r):
        return {k: v for k, v in r.items() if k not in ("created", "stage_s")}
    return strip(a) == strip(b)


def recorded(record: dict, results: Path) -> Path | None:
    """The record in `results` of the same run as `record` (`same_run`), or None."""
    if not results.is_dir():
        return None
    return next((p for p, r in load_records(results) if same_run(r, record)), None)


# ---------------------------------------------------------------- reading

def check_record(record, where: str) -> None:
    """Raise UserError naming `where` unless `record` is a ledger record of a schema this reads."""
    if not isinstance(record, dict) or record.get("schema") not in SCHEMAS:
        found = record.get("schema") if isinstance(record, dict) else type(record).__name__
        raise UserError(f"{where}: not a results record (schema {found!r}, expected one of {', '.join(SCHEMAS)}); "
                        "move it out of the results folder")
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise UserError(f"{where}: record lacks {', '.join(missing)}; it is malformed, fix or remove it")
    n = len(record["test_labels"])
    teacher = record["teacher"].get("test_predictions") if isinstance(record["teacher"], dict) else ""
    if teacher is not None and not _packed(teacher, n):
        raise UserError(f"{where}: teacher.test_predictions must be null or {n} hex digits (one per test label); "
                        "the record is malformed, fix or remove it")
    for v, row in record["variants"].items():
        if not _packed(row.get("test_predictions") if isinstance(row, dict) else None, n):
            raise UserError(f"{where}: variant {v!r} needs test_predictions as {n} hex digits (one per test "
                            "label); the record is malformed, fix or remove it")
        if not isinstance(row.get("int8", {}).get("test_accuracy_hwsim"), (int, float)):
            raise UserError(f"{where}: variant {v!r} lacks int8.test_accuracy_hwsim; fix or remove the record")


def _packed(text, n: int) -> bool:
    return isinstance(text, str) and len(text) == n and re.fullmatch(r"[0-9a-f]*", text) is not None


def load_records(results: Path) -> list[tuple[Path, dict]]:
    """Every `*.json` record in `results`, checked; a malformed or foreign file is refused by name."""
    if not results.is_dir():
        raise UserError(f"no results folder {results}; run `hwsim study` or `hwsim demo` (they write records there) or pass DIR")
    out = []
    for path in sorted(results.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise UserError(f"{path}: not valid JSON ({err}); fix or remove it") from None
        check_record(record, str(path))
        out.append((path, record))
    return out


# ---------------------------------------------------------------- importing a finished demo folder

DEMO_LOG = re.compile(r"^\[demo (\d\d):(\d\d):(\d\d)\] (.*)$")
STAGE_STARTS = (("train", "training "), ("export", "exporting "), ("simulate", "simulating "),
                ("sweep", "sweep "), ("scenarios", "scenario table:"), ("report", "scenario table done"))


def stage_times_from_log(lines) -> dict:
    """Stage seconds from the demo's `[demo HH:MM:SS]` lines: each stage runs from its first line to the
    next stage's first line; "report" ends at "done in N s", whose N is "total"."""
    starts, total = {}, None
    for line in lines:
        m = DEMO_LOG.match(line.strip())
        if not m:
            continue
        t = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
        msg = m[4]
        for stage, prefix in STAGE_STARTS:
            if (msg.startswith(prefix) or not starts) and stage not in starts:  # the first line starts "train"
                starts[stage] = t
        if msg.startswith("done in "):
            starts["_end"], total = t, float(msg.split()[2])
    order = [s for s, _ in STAGE_STARTS if s in starts] + ["_end"] * ("_end" in starts)
    stages = {a: float((starts[b] - starts[a]) % 86400) for a, b in zip(order, order[1:])}
    return {**stages, "total": total}


def import_demo(out: Path, results: Path, commit: str, log: Path | None) -> Path:
    """Write the record of an already finished demo folder `out` (made at `commit`, before the demo
    wrote records; it kept no teacher predictions)."""
    from hwsim.app.demo import DemoConfig

    report = json.loads((out / "report.json").read_text())
    cfg = DemoConfig.from_flat(report["config"])
    stages = stage_times_from_log(log.read_text().splitlines()) if log else {"total": report["timings"]["total_s"]}
    host = {**machine(), "note": "recorded at the import, not during the run"}
    metrics = {p.parent.name: json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/metrics.json"))}
    reports = {v: out / "reports" / f"{v}.json" for v in report["variants"]}
    record = seed_record("demo", cfg.recipe, cfg.seed, metrics, reports, None, stages, git_commit(rev=commit), host)
    record["note"] = f"imported from {out} after the run (`hwsim results --import-demo`); created = import time"
    return write_record(record, results)
