"""The command line as a user meets it: `hwsim run --text` names the predicted labels, local-only
commands never contact the hub, and every `--help` shows the options' defaults."""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from models.hub import OFFLINE_VARS
from quant.train.config import opt
from models.variants import InhibitorOptions

ROOT = Path(__file__).resolve().parents[1]
WORDS = [a + b for a in "bcdfghjk" for b in "aeiou"]  # 40 tokens, all inside the synth model's 50


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """A synthetic integer model without a task, the same model recording task rt, and a tokenizer."""
    from transformers import BertTokenizerFast

    from export import save_model, to_onnx
    from quant.intops.synth import SynthConfig, synth_program

    root = tmp_path_factory.mktemp("cli")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}).save_pretrained(str(root / "tok"))
    prog = synth_program(SynthConfig())
    save_model(to_onnx(prog), root / "plain.onnx")
    save_model(to_onnx(replace(prog, meta={**prog.meta, "task": "rt"})), root / "rt.onnx")
    return root


def hwsim(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARS}  # as a user's shell
    return subprocess.run([sys.executable, "-m", "hwsim.app.cli", *map(str, args)], cwd=cwd,
                          env={**base, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})},
                          capture_output=True, text=True, timeout=300)


def test_run_text_prints_label_names_and_logits(kit):
    texts = ["ba be bi", "ko ku ka ke"]
    done = hwsim("run", kit / "rt.onnx", "--text", texts[0], "--text", texts[1], "--tokenizer", kit / "tok",
                 "--report", kit / "rt.json", cwd=kit, env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert done.returncode == 0, done.stderr
    report = json.loads((kit / "rt.json").read_text(encoding="utf-8"))
    assert report["label_names"] == ["rotten", "fresh"]
    scale = 2.0 ** -report["meta"]["logits_exp"]
    assert "predictions (labels of task rt):" in done.stdout
    for text, pred, logits in zip(texts, report["predictions"], report["logits"]):
        name = ["rotten", "fresh"][pred]
        expected = f"  {text!r}: {name} (logits rotten {logits[0] * scale:.4f}, fresh {logits[1] * scale:.4f})"
        assert expected in done.stdout.splitlines(), done.stdout
    assert "unreachable" not in done.stderr  # a local-only command does not probe the hub


def test_run_text_without_task_shows_class_indices(kit):
    done = hwsim("run", kit / "plain.onnx", "--text", "ba be", "--tokenizer", kit / "tok",
                 "--report", kit / "plain.json", cwd=kit)
    assert done.returncode == 0, done.stderr
    report = json.loads((kit / "plain.json").read_text(encoding="utf-8"))
    assert "label_names" not in report
    assert "predictions (class indices: the model records no task" in done.stdout
    assert re.search(rf"  'ba be': {report['predictions'][0]} \(logits 0 -?\d+\.\d{{4}}, 1 -?\d+\.\d{{4}}\)",
                     done.stdout), done.stdout


def test_export_records_the_run_task(tmp_path):
    from export.pipeline import run_task
    from quant.train.checkpoint import QUANT_FORMAT

    (tmp_path / "config.json").write_text(json.dumps(
        {"format": QUANT_FORMAT, "extra": {"train_config": {"task": "sst2"}}}), encoding="utf-8")
    assert run_task(tmp_path) == "sst2"


def test_export_records_the_run_max_length(tmp_path):
    from export.pipeline import run_max_length
    from quant.train.checkpoint import QUANT_FORMAT

    for config, want in (({"task": "rt", "max_length": 48}, 48), ({"task": "rt"}, None)):
        (tmp_path / "config.json").write_text(json.dumps(
            {"format": QUANT_FORMAT, "extra": {"train_config": config}}), encoding="utf-8")
        assert run_max_length(tmp_path) == want


LONG = " ".join(WORDS * 2)   # 82 tokens with [CLS] and [SEP], more than the synth model's 64 positions


def _seq_lens(report: Path) -> list[int]:
    return json.loads(report.read_text(encoding="utf-8"))["seq_lens"]


def test_run_truncates_at_the_max_length_the_model_was_trained_with(kit, tmp_path):
    """`hwsim export RUN_DIR` records the run's max_length; `hwsim run` truncates there unless
    --max-length says otherwise; a model without it (exported before) truncates at its positions."""
    from transformers import BertTokenizerFast

    from export.pipeline import export_run
    from models.config import EncoderConfig
    from quant.qat.model import random_quant_model
    from quant.train.checkpoint import save_quant_run

    cfg = EncoderConfig(vocab_size=50, hidden=8, layers=1, heads=2, ffn=16, max_position=20, num_labels=2)
    qmodel = random_quant_model(cfg, "inhibitor", 8, 0, calib_batches=1, calib_len=8)
    run = save_quant_run(qmodel, qmodel.cfg, qmodel.qcfg, tmp_path / "run",
                         tokenizer=BertTokenizerFast.from_pretrained(str(kit / "tok")),
                         extra={"train_config": {"task": "rt", "max_length": 6}})
    export_run(run, tmp_path / "m.onnx")
    for model, extra, want in (("m.onnx", (), 6), ("m.onnx", ("--max-length", 9), 9),
                               (kit / "plain.onnx", (), 64), (kit / "plain.onnx", ("--max-length", 7), 7)):
        done = hwsim("run", tmp_path / model, "--text", LONG, "--tokenizer", kit / "tok", *extra,
                     "--report", tmp_path / "r.json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert _seq_lens(tmp_path / "r.json") == [want], (model, extra)
    done = hwsim("run", tmp_path / "m.onnx", "--text", LONG, "--max-length", 21, "--report", tmp_path / "x.json",
                 cwd=tmp_path)
    assert done.returncode == 2 and "--max-length 21 is outside 1..20" in done.stderr
    assert not (tmp_path / "x.json").exists()


def _subparsers(parser: argparse.ArgumentParser):
    yield "hwsim", parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"hwsim {name}", sub


def test_every_help_shows_the_defaults():
    """Every option whose default is a value (not None, not False) shows it in `--help`."""
    from hwsim.app.cli import COMMANDS, build_parser

    walked, missing = [], []
    for prog, parser in _subparsers(build_parser()):
        walked.append(prog)
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
                continue
            shown = " ".join(parser._get_formatter()._expand_help(action).split())  # this option's help
            if f"(default: {action.default})" not in shown or shown not in text:
                missing.append(f"{prog} {action.option_strings[-1]} (default {action.default!r})")
    assert walked == ["hwsim", *(f"hwsim {name}" for name in COMMANDS)]
    assert not missing, missing


def _train_parser() -> argparse.ArgumentParser:
    from hwsim.app.cli import build_parser

    return dict(_subparsers(build_parser()))["hwsim train"]


def test_train_options_are_the_config_fields():
    """`hwsim train` has one option per (nested) field of TrainConfig, with the field's default and help,
    and no other option."""
    from dataclasses import MISSING, is_dataclass

    from quant.train.cli import DERIVED_DEFAULTS, config_fields
    from quant.train.config import TrainConfig

    options = {a.dest: a for a in _train_parser()._actions if a.dest not in ("help", "offline")}
    leaves = [(f, kind) for f, kind in config_fields(TrainConfig) if not is_dataclass(kind)]
    assert sorted(options) == sorted(f.name for f, _ in leaves)
    for f, _ in leaves:
        action = options[f.name]
        if f.name in DERIVED_DEFAULTS:
            assert action.default is None and action.help == f"{f.metadata['help']}; {DERIVED_DEFAULTS[f.name][0]}"
        else:
            assert action.default == (None if f.default is MISSING else f.default) and action.help == f.metadata["help"]
        assert action.required == (f.default is MISSING and f.default_factory is MISSING)


def test_train_defaults_live_on_the_fields():
    """No flag given: the config is TrainConfig's own defaults; --distill defaults to none with --float."""
    from quant.train.cli import config_from_args
    from quant.train.config import DistillConfig, TrainConfig

    parser = _train_parser()
    assert config_from_args(parser.parse_args(["--out", "o"])) == TrainConfig(out="o")
    assert config_from_args(parser.parse_args(["--out", "o", "--float"])) == \
        TrainConfig(out="o", float_model=True, distill=DistillConfig(mode="none"))
    argv = ["--out", "o", "--float", "--distill", "agnostic", "--temperature", "3", "--hidden-loss", "mse",
            "--inhibitor-alpha", "0.25", "--no-inhibitor-center", "--no-calibrate-inhibitor", "--limit", "5",
            "--bits", "4", "--data-dir", "d", "--eval-batch-size", "7"]
    assert config_from_args(parser.parse_args(argv)) == TrainConfig(
        out="o", float_model=True, distill=DistillConfig(mode="agnostic", temperature=3.0, hidden_loss="mse"),
        inhibitor=InhibitorOptions(alpha_init=0.25, center=False), calibrate=False, limit=5, bits=4, data_dir="d",
        eval_batch_size=7)


@dataclass(frozen=True)
class _Inner:
    documented: int = opt(1, help="an inner setting")
    forgotten: float = 0.5


@dataclass(frozen=True)
class _Outer:
    name: str = opt("x", help="a setting")
    inner: _Inner = opt(factory=_Inner, help="the inner settings")


@dataclass(frozen=True)
class _Bare:
    nested: _Inner = field(default_factory=_Inner)


def test_a_config_field_without_help_text_is_refused():
    """A new field must bring its help text: the generated command line refuses a field without one."""
    from quant.train.cli import add_config_arguments

    with pytest.raises(TypeError, match=r"_Inner\.forgotten has no help text"):
        add_config_arguments(argparse.ArgumentParser(), _Outer)
    with pytest.raises(TypeError, match=r"_Bare\.nested has no help text"):
        add_config_arguments(argparse.ArgumentParser(), _Bare)


def test_thread_waiting_is_a_short_spin_unless_the_user_chose(monkeypatch):
    """`hwsim` sets GOMP_SPINCOUNT (models/threads.py) unless a wait policy or spin count is given."""
    from models.threads import SPINCOUNT, set_thread_waiting

    for given, expected in (({}, SPINCOUNT), ({"GOMP_SPINCOUNT": "5"}, "5"), ({"OMP_WAIT_POLICY": "PASSIVE"}, None)):
        monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        for k, v in given.items():
            monkeypatch.setenv(k, v)
        set_thread_waiting()
        import os
        assert os.environ.get("GOMP_SPINCOUNT") == expected
