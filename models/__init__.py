"""The float reference encoder: config, the attention variants' registry and modules, model, loading, teacher.

The public names below are imported lazily (PEP 562): `models.errors` and `models.files` are used by
the CLI dispatcher, and `import models` must not pull in torch and transformers for `hwsim --help`.
"""
from __future__ import annotations

import importlib

# public name -> submodule defining it
_EXPORTS = {
    "DotAttention": "attention", "InhibitorAttention": "attention",
    "SymmetricAttention": "attention", "inhibit_fast": "attention", "inhibit_reference": "attention",
    "make_attention": "attention",
    "EncoderConfig": "config",
    "Encoder": "encoder", "EncoderOutput": "encoder", "SequenceClassifier": "encoder",
    "UserError": "errors",
    "load_checkpoint": "loading", "load_pretrained": "loading", "load_tokenizer": "loading",
    "save_checkpoint": "loading",
    "resolve_teacher": "teacher",
    "InhibitorOptions": "variants", "Variant": "variants", "VARIANTS": "variants",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"models.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return __all__
