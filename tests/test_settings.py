"""Settings added later leave the fingerprints of cached stages and ledger records unmoved at their
defaults (`models.settings.hashed`), and move them when set."""
from __future__ import annotations

import dataclasses

import pytest

from hwsim.app.study import StudyConfig
from models.settings import LATER, default_of, hashed
from quant.train.config import DistillConfig, TrainConfig


def later_fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get(LATER)]


@pytest.mark.parametrize("cls", [StudyConfig, TrainConfig, DistillConfig])
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
    plain["distill"] = {k: v for k, v in plain["distill"].items() if k not in later_fields(DistillConfig)}
    assert hashed(cfg) == {k: v for k, v in plain.items() if k not in later_fields(TrainConfig)}


def test_a_later_field_set_is_hashed():
    cfg = TrainConfig(out="x", distill=DistillConfig(hidden_layers="last"))
    assert hashed(cfg)["distill"]["hidden_layers"] == "last"
    assert hashed(StudyConfig(hidden_layers="last"))["hidden_layers"] == "last"
