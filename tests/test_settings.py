"""Settings added later leave the fingerprints of cached stages and ledger records unmoved at their
defaults (`models.settings.hashed`), and move them when set."""
from __future__ import annotations

import dataclasses
import re

import pytest

from hwsim.app.study import StudyConfig
from models.settings import LATER, default_of, hashed
from models.variants import InhibitorOptions
from quant.train.config import DistillConfig, TrainConfig


def later_fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get(LATER)]


@pytest.mark.parametrize("cls", [StudyConfig, TrainConfig, DistillConfig, InhibitorOptions])
def test_later_fields_have_defaults(cls):
    assert all(default_of(f) is not dataclasses.MISSING for f in dataclasses.fields(cls) if f.metadata.get(LATER))


def test_defaults_hash_as_before_the_later_fields():
    """At their defaults the configs hash as `asdict` without the later fields, i.e. as before them."""
    for cfg in (StudyConfig(), StudyConfig.cut()):
        plain = dataclasses.asdict(cfg)
        assert later_fields(StudyConfig) and hashed(cfg) == {k: v for k, v in plain.items()
                                                             if k not in later_fields(StudyConfig)}
    cfg = TrainConfig(out="x")
    plain = dataclasses.asdict(cfg)
    for name, cls in (("distill", DistillConfig), ("inhibitor", InhibitorOptions)):
        assert later_fields(cls)
        plain[name] = {k: v for k, v in plain[name].items() if k not in later_fields(cls)}
    assert hashed(cfg) == {k: v for k, v in plain.items() if k not in later_fields(TrainConfig)}


def test_a_later_field_set_is_hashed():
    cfg = TrainConfig(out="x", distill=DistillConfig(hidden_layers="last"))
    assert hashed(cfg)["distill"]["hidden_layers"] == "last"
    assert hashed(StudyConfig(hidden_layers="last"))["hidden_layers"] == "last"


# the ledger's recorded recipes (results/): the full recipe and the demo's cut, with their split sizes
RECORDED = {"05ccdb96540a": (StudyConfig(), {"train": 10296, "validation": 1297, "test": 1159,
                                             "train_used": {"teacher": 10296, "student": 10296, "qat": 10296}}),
            "89bc17480e5e": (StudyConfig.cut(), {"train": 10296, "validation": 1297, "test": 1159,
                                                 "train_used": {"teacher": 3000, "student": 2000, "qat": 1000}})}


def fingerprint_of(study: StudyConfig, data: dict) -> str:
    """`hwsim.app.ledger.recipe_of` with the split sizes given (no data read)."""
    from hwsim.app.ledger import recipe
    return recipe({k: v for k, v in hashed(study).items() if k != "task"}, study.task, data)["fingerprint"]


def test_recorded_recipes_keep_their_fingerprints():
    for fp, (study, data) in RECORDED.items():
        assert fingerprint_of(study, data) == fp


@pytest.mark.parametrize("change", [{"inhibitor_scalars": "log"}, {"score_distill": 0.5}, {"score_temperature": 2.0},
                                    {"block_init_steps": -1}])
def test_each_ablation_option_set_moves_the_recipe_fingerprint(change):
    for fp, (study, data) in RECORDED.items():
        changed = dataclasses.replace(study, **change)
        assert fingerprint_of(changed, data) != fp and hashed(changed)[next(iter(change))] == next(iter(change.values()))


def test_ablation_options_flow_from_the_command_lines():
    import argparse
    from hwsim.app import study
    from quant.train import cli
    parser = argparse.ArgumentParser()
    study.add_arguments(parser)
    args = ["--inhibitor-scalars", "log", "--score-distill", "0.25", "--score-temperature", "2"]
    recipe, _ = study.config_from_args(parser.parse_args([*args, "--block-init-steps", "-1"]))
    assert recipe == StudyConfig(inhibitor_scalars="log", score_distill=0.25, score_temperature=2.0, block_init_steps=-1)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    cfg = cli.config_from_args(parser.parse_args(["--out", "o", "--float", "--distill", "task", "--attention",
                                                  "inhibitor", *args]))
    assert cfg == TrainConfig(out="o", float_model=True, attention="inhibitor",
                              inhibitor=InhibitorOptions(scalars="log"),
                              distill=DistillConfig(mode="task", score_weight=0.25, score_temperature=2.0))
    assert cfg.attention_options().scalars == "log"
    plain = hashed(TrainConfig(out="o", float_model=True, attention="inhibitor", distill=DistillConfig(mode="task")))
    assert hashed(cfg) != plain
    assert hashed(cfg)["inhibitor"]["scalars"] == "log" and hashed(cfg)["distill"]["score_weight"] == 0.25
    with pytest.raises(SystemExit):  # argparse refuses an unknown parametrisation
        cli.config_from_args(parser.parse_args(["--out", "o", "--inhibitor-scalars", "exp"]))


def test_the_study_sets_the_ablations_on_the_inhibitor_student_only():
    """Other students' stages keep their settings, hence their cached stages."""
    plain = StudyConfig()
    both = StudyConfig(inhibitor_scalars="log", score_distill=0.5, score_temperature=2.0)
    assert [plain.student_options(v) for v in ("dot", "inhibitor", "symmetric")] == [{}, {}, {}]
    assert both.student_options("dot") == both.student_options("symmetric") == {}
    assert both.student_options("inhibitor") == {
        "inhibitor": InhibitorOptions(scalars="log"),
        "distill": DistillConfig(mode="task", score_weight=0.5, score_temperature=2.0)}


@pytest.mark.parametrize("make, message", [
    (lambda: InhibitorOptions(scalars="exp"), "unknown --inhibitor-scalars 'exp'"),
    (lambda: InhibitorOptions(scalars="log", beta_init=0.0), "needs positive --inhibitor-gamma and --inhibitor-beta"),
    (lambda: TrainConfig(out="o", distill=DistillConfig(score_weight=0.5)), "needs --float and --distill task|agnostic"),
    (lambda: TrainConfig(out="o", float_model=True, distill=DistillConfig(mode="none", score_weight=0.5)),
     "needs --float and --distill task|agnostic"),
    (lambda: TrainConfig(out="o", float_model=True, distill=DistillConfig(score_weight=-1.0)), "--score-distill >= 0"),
    (lambda: StudyConfig(inhibitor_scalars="exp"), "--inhibitor-scalars must be one of linear, log"),
    (lambda: StudyConfig(score_temperature=0.0), "--score-temperature > 0"),
])
def test_bad_ablation_options_are_refused(make, message):
    from models.errors import UserError
    with pytest.raises(UserError, match=re.escape(message)):
        make()


def test_a_checkpoint_written_before_later_settings_resumes():
    """A training checkpoint's config written before the later settings existed reads as their defaults
    (`models.settings.filled`), so `--resume` of such a run is not refused."""
    from models.settings import filled
    cfg = TrainConfig(out="o", float_model=True)
    old = dataclasses.asdict(cfg)
    for name, cls in (("distill", DistillConfig), ("inhibitor", InhibitorOptions)):
        old[name] = {k: v for k, v in old[name].items() if k not in later_fields(cls)}
    old = {k: v for k, v in old.items() if k not in later_fields(TrainConfig)}
    assert old != cfg.to_dict() and filled(TrainConfig, old) == cfg.to_dict()
