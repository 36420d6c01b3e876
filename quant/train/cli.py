"""`hwsim train`: fine-tune a float classifier, or quantization-aware-train a distilled student.

Examples:
  hwsim train --task rt --attention dot --teacher minilm --float --out runs/teacher
  hwsim train --task rt --attention inhibitor --teacher runs/teacher --float --distill task \
      --layer-init-steps -1 --out runs/inh
  hwsim train --task rt --attention inhibitor --teacher runs/teacher --init-student runs/inh --bits 8 --out runs/inh8
  torchrun --nproc_per_node=2 -m hwsim.app.cli train ...   (DistributedDataParallel)

The options are generated from `quant.train.config.TrainConfig` and its `DistillConfig`: one per field,
named, typed, defaulted and documented by the field (`add_config_arguments`); `--distill`'s default
depends on `--float` (`DERIVED_DEFAULTS`).
"""
from __future__ import annotations

import argparse
import typing
from dataclasses import MISSING, Field, fields, is_dataclass
from types import NoneType, UnionType
from typing import Any, Callable, Iterator

from quant.train.config import TrainConfig

DERIVED_DEFAULTS: dict[str, tuple[str, Callable[[argparse.Namespace], Any]]] = {
    "mode": ("default task, and none with --float", lambda args: "none" if args.float_model else "task"),
}
"""Fields whose command-line default depends on another flag: field -> (what --help adds, the rule)."""


def config_fields(cls: type) -> Iterator[tuple[Field, type]]:
    """Every field of the dataclass `cls` with its type, depth first (a nested dataclass field, then its
    fields); `TypeError` for a field without help text."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if not f.metadata.get("help"):
            raise TypeError(f"{cls.__name__}.{f.name} has no help text: declare it with "
                            f"quant.train.config.opt(..., help=...) so that `hwsim train --help` documents it")
        yield f, hints[f.name]
        if is_dataclass(hints[f.name]):
            yield from config_fields(hints[f.name])


def _value_type(kind: Any) -> type:
    """`int` of `int | None`; the type itself otherwise."""
    if isinstance(kind, UnionType):
        (kind,) = [k for k in typing.get_args(kind) if k is not NoneType]
    return kind


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One option per (nested) field of the dataclass `cls`: `--field-name` (or the field's `flag`), the
    field's type, default, `choices` and help; a bool is a switch (`--x/--no-x` when on by default);
    a field without a default is required. The option's dest is the field's name."""
    dests: set[str] = set()
    for f, kind in config_fields(cls):
        if is_dataclass(kind):
            continue
        if f.name in dests:
            raise TypeError(f"two fields named {f.name!r} in {cls.__name__}: rename one")
        dests.add(f.name)
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        kw: dict[str, Any] = {"dest": f.name, "help": f.metadata["help"]}
        if f.default is MISSING and f.default_factory is MISSING:
            kw["required"] = True
        else:
            kw["default"] = f.default if f.default is not MISSING else f.default_factory()
        if _value_type(kind) is bool:
            kw["action"] = argparse.BooleanOptionalAction if kw["default"] else "store_true"
        else:
            kw["type"] = _value_type(kind)
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
            else:
                kw["metavar"] = flag.lstrip("-").replace("-", "_").upper()
        if f.name in DERIVED_DEFAULTS:
            kw["default"] = None
            kw["help"] += "; " + DERIVED_DEFAULTS[f.name][0]
        parser.add_argument(flag, **kw)


def config_from_namespace(cls: type, args: argparse.Namespace) -> Any:
    """The dataclass `cls` filled from the options of `add_config_arguments` (nested ones first)."""
    values = {}
    for f in fields(cls):
        kind = typing.get_type_hints(cls)[f.name]
        if is_dataclass(kind):
            values[f.name] = config_from_namespace(kind, args)
            continue
        value = getattr(args, f.name)
        if value is None and f.name in DERIVED_DEFAULTS:
            value = DERIVED_DEFAULTS[f.name][1](args)
        values[f.name] = value
    return cls(**values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, TrainConfig)


def needs_hub(args: argparse.Namespace) -> bool:
    """Whether this command would read its data from the Hugging Face hub."""
    from quant.data.tasks import needs_hub as task_needs_hub
    return task_needs_hub(args.task, args.data_dir)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return config_from_namespace(TrainConfig, args)


def run(args: argparse.Namespace) -> int:
    from models import variants
    from quant.data.tasks import get_task
    from quant.train.loop import train

    get_task(args.task)  # unknown task: UserError before anything is loaded
    variants.get(args.attention)  # unknown attention: UserError naming the registered ones
    result = train(config_from_args(args))
    if result:
        shown = {s: result[s] for s in ("validation", "test") if s in result}
        print(f"best epoch {result['best_epoch']}: " + "; ".join(
            f"{s} " + ", ".join(f"{k} {v:.4f}" for k, v in m.items()) for s, m in shown.items()))
        print(f"wrote {args.out}/metrics.json")
    return 0
