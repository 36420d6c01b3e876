"""`EncoderConfig`: the one frozen description of a float reference encoder.

Every module of `models/` is built from it; it round-trips through JSON (`to_dict`/`from_dict`) and
is stored in our checkpoints under the key "encoder_config". The attention variant's own settings are
its options dataclass (`models.variants`) in `attention_options`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from models import variants
from models.errors import UserError
from models.settings import hashed

ACTIVATIONS = ("gelu", "relu")
POOLERS = ("bert", "distilbert")


@dataclass(frozen=True)
class EncoderConfig:
    vocab_size: int = 30522
    hidden: int = 768
    layers: int = 6
    heads: int = 12
    ffn: int = 3072
    max_position: int = 512
    type_vocab_size: int = 0          # 0 = no token-type embeddings (DistilBERT)
    activation: str = "gelu"          # 'gelu' (exact erf) | 'relu'
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    attention_dropout: float = 0.1
    attention: str = "dot"            # a name in models.variants.VARIANTS
    pooler: str = "distilbert"        # 'bert': dense+tanh | 'distilbert': pre_classifier+ReLU
    num_labels: int = 2               # 1 = regression
    pad_token_id: int = 0
    attention_options: Any = None     # the variant's options dataclass; None: its defaults

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden", "layers", "heads", "ffn", "max_position", "num_labels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"EncoderConfig.{name} must be a positive integer, got {value!r}")
        if self.type_vocab_size < 0:
            raise UserError(f"EncoderConfig.type_vocab_size must be >= 0 (0 = none), got {self.type_vocab_size}")
        if self.hidden % self.heads:
            raise UserError(f"hidden size {self.hidden} is not divisible by heads {self.heads}: "
                            f"choose heads among the divisors of {self.hidden}")
        if self.activation not in ACTIVATIONS:
            raise UserError(f"unknown activation {self.activation!r}: use one of {', '.join(ACTIVATIONS)}")
        if self.pooler not in POOLERS:
            raise UserError(f"unknown pooler {self.pooler!r}: use one of {', '.join(POOLERS)}")
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"EncoderConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.layer_norm_eps <= 0:
            raise UserError(f"EncoderConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise UserError(f"pad_token_id {self.pad_token_id} is outside the vocabulary [0, {self.vocab_size})")
        options = variants.get(self.attention).options
        if self.attention_options is None:
            object.__setattr__(self, "attention_options", options())
        elif not isinstance(self.attention_options, options):
            raise UserError(f"attention {self.attention!r} takes {options.__name__}, got "
                            f"{type(self.attention_options).__name__}: pass attention_options={options.__name__}(...)")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def replace(self, **changes: Any) -> "EncoderConfig":
        """A copy with `changes` applied (validated again); another attention without `attention_options`
        gets that variant's default options."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise UserError(f"unknown EncoderConfig field(s) {sorted(unknown)}; "
                            f"known: {', '.join(f.name for f in dataclasses.fields(self))}")
        if changes.get("attention", self.attention) != self.attention:
            changes.setdefault("attention_options", None)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; options added later are left out at their defaults (`models.settings.hashed`),
        so a model of the defaults is written, and digested (`quant.train.store.model_digest`), as before."""
        return hashed(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EncoderConfig":
        if not isinstance(data, dict):
            raise UserError(f"an encoder config must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        legacy = {k: data.pop(k) for k in variants.legacy_keys() if k in data}  # written before attention_options
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UserError(f"unknown EncoderConfig field(s) {sorted(unknown)} in the config; "
                            f"remove them or upgrade inhibitor-hwsim")
        name = data.get("attention", cls.attention)
        data["attention_options"] = variants.options_from_dict(name, data.get("attention_options"), legacy)
        return cls(**data)
