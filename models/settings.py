"""Settings as hashed into fingerprints: the stage caches (`hwsim.app.stages`) and the ledger's recipe
fingerprint (`hwsim.app.ledger`) hash frozen config dataclasses through `hashed`.

A setting added to a config after results were recorded is declared *later* (`LATER` in the field's
metadata; `quant.train.config.opt(..., later=True)` and the study's `_opt`): its default must be the
behaviour before it existed, and `hashed` leaves it out while it holds that default. So adding an
option to the recipe keeps every cached stage and every ledger record made before valid (their
fingerprints do not move), and a run that sets it gets a fingerprint of its own.

    >>> from dataclasses import dataclass, field
    >>> @dataclass(frozen=True)
    ... class C:
    ...     a: int = 1
    ...     b: str = field(default="all", metadata={LATER: True})
    >>> hashed(C()), hashed(C(b="last"))
    ({'a': 1}, {'a': 1, 'b': 'last'})
"""
from __future__ import annotations

import dataclasses
from typing import Any

LATER = "later"  # field metadata key: added after records existed; hashed only when not at its default


def default_of(f: dataclasses.Field) -> Any:
    """A field's default value (its factory's product), or MISSING."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def hashed(config: Any) -> Any:
    """`dataclasses.asdict(config)` without the later-added fields that hold their defaults, nested
    dataclasses included; other values as `asdict` gives them."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return config
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.metadata.get(LATER) and value == default_of(f):
            continue
        out[f.name] = _plain(value)
    return out


def filled(config_class: type, data: dict) -> dict:
    """`data` (a config's `asdict` as an older version wrote it) with the fields it lacks at their
    defaults, nested dataclasses included, so that it compares with `asdict` of today's config.

    >>> from dataclasses import dataclass, field
    >>> @dataclass(frozen=True)
    ... class C:
    ...     a: int = 1
    ...     b: str = field(default="all", metadata={LATER: True})
    >>> filled(C, {"a": 2})
    {'a': 2, 'b': 'all'}
    """
    out = dict(data)
    for f in dataclasses.fields(config_class):
        default = default_of(f)
        nested = dataclasses.is_dataclass(default) and not isinstance(default, type)
        if f.name not in out and default is not dataclasses.MISSING:
            out[f.name] = dataclasses.asdict(default) if nested else default
        elif nested and isinstance(out.get(f.name), dict):
            out[f.name] = filled(type(default), out[f.name])
    return out


def _plain(value: Any) -> Any:
    """Containers as `asdict` copies them (tuples stay tuples, lists lists), dataclasses inside hashed."""
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return hashed(value) if dataclasses.is_dataclass(value) else value
