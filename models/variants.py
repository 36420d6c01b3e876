"""The attention variants: one `Variant` entry per variant in `VARIANTS`, every facet of it in one place.

A variant is its name, its options (a frozen dataclass whose defaults are the trained model's), and
the facets that the stages find through this registry by name, each living in the layer that owns it:

| facet              | layer        | what it is                                                               |
|--------------------|--------------|--------------------------------------------------------------------------|
| `float_module`     | models       | the float attention (`models.attention.Attention`)                       |
| `quantized_module` | quant.qat    | the QAT module and the lowering of its queries, keys and attention node  |
|                    |              | (`quant.qat.attention.QAttention`)                                       |
| `synthesis`        | quant.intops | (queries_keys, attention_core) of a synthetic integer program            |
|                    |              | (`quant.intops.synth`)                                                   |
| `calibration`      | quant.train  | fit(student, teacher, batches) -> per-layer fits, run on a student built |
|                    |              | from a dot-product model before training; None when it has none          |

A facet is the object itself or its "module:attribute" path, imported when a stage first asks for it
(`Variant.facet`), so that this module stays torch-free and below every layer it names. The modules
declare the parameters that train at their own learning rate (`scalar_parameters()`). How reports and
the cost table relate a variant is data: `compared_with` (the baseline of its accuracy and energy
comparisons) and `subject` (a variant the study is about: the cost table prints its energy ratio to its
baseline, the ledger compares it with the float teacher).

`register` rejects a duplicate name; `unregister` is for tests that add a variant of their own.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from models.errors import UserError
from models.settings import LATER

SCALARS = ("linear", "log")  # how the float inhibitor parametrises gamma and beta (InhibitorOptions.scalars)


def _opt(default: Any, flag: str, help: str, later: bool = False, **cli: Any) -> Any:
    """An option with the command-line flag and help text `hwsim train` is generated with (`cli`: its
    `choices`); `later`: added after trained models and records existed, its default the behaviour
    before (`models.settings.hashed`)."""
    return field(default=default, metadata={"flag": flag, "help": help, **({LATER: True} if later else {}), **cli})


@dataclass(frozen=True)
class NoOptions:
    """The options of a variant that has none."""

    legacy: ClassVar[dict[str, str]] = {}


@dataclass(frozen=True)
class InhibitorOptions:
    """Inhibitor attention (REFERENCE.md section 1): the trained model's settings are the defaults."""

    center: bool = _opt(True, "--inhibitor-center", "inhibitor: subtract the mean score over valid keys")
    signed: bool = _opt(True, "--inhibitor-signed", "inhibitor: signed inhibition (off drops negative values)")
    alpha_init: float = _opt(0.5, "--inhibitor-alpha", "inhibitor: initial score shift alpha (<= 0 disables it)")
    gamma_init: float = _opt(1.0, "--inhibitor-gamma", "inhibitor: initial score scale gamma (the calibration "
                                                       "replaces it)")
    beta_init: float = _opt(1.0, "--inhibitor-beta", "inhibitor: initial output scale beta (the calibration "
                                                     "replaces it)")
    scalars: str = _opt("linear", "--inhibitor-scalars", "inhibitor: gamma and beta trained as they are (linear) or "
                                                         "as their logarithms (log: they stay positive and move by "
                                                         "factors; its quantized twin's log2 scalars get a rate that "
                                                         "can cross a rounding boundary in an epoch)",
                        later=True, choices=SCALARS)
    per_head: bool = _opt(False, "--inhibitor-per-head", "inhibitor: one gamma, alpha and beta per head, "
                                                         "calibrated per head (else one per layer)", later=True)

    def __post_init__(self) -> None:
        if self.scalars not in SCALARS:
            raise UserError(f"unknown --inhibitor-scalars {self.scalars!r}: use one of {', '.join(SCALARS)}")
        if self.scalars == "log" and (self.gamma_init <= 0 or self.beta_init <= 0):
            raise UserError(f"--inhibitor-scalars log needs positive --inhibitor-gamma and --inhibitor-beta, got "
                            f"{self.gamma_init}, {self.beta_init}")

    # the flat EncoderConfig keys that held these options before (checkpoints written until then)
    legacy: ClassVar[dict[str, str]] = {"inhibitor_center": "center", "inhibitor_signed": "signed",
                                        "alpha_init": "alpha_init", "gamma_init": "gamma_init",
                                        "beta_init": "beta_init"}


FACET_LAYERS = {"float_module": "models", "quantized_module": "quant.qat", "synthesis": "quant.intops",
                "calibration": "quant.train"}
"""Facet -> the package whose modules a "module:attribute" facet may name (the layer that owns it)."""


@dataclass(frozen=True)
class Variant:
    name: str
    options: type                       # frozen dataclass with defaults (NoOptions: none)
    float_module: Any
    quantized_module: Any
    synthesis: Any
    calibration: Any = None
    compared_with: str | None = None    # the baseline of its comparisons; None: it is the baseline
    subject: bool = False

    def facet(self, name: str) -> Any:
        """The facet `name` (FACET_LAYERS), imported on first use when given as "module:attribute"."""
        value = getattr(self, name)
        if not isinstance(value, str):
            return value
        module, _, attr = value.partition(":")
        layer = FACET_LAYERS[name]
        if module != layer and not module.startswith(layer + "."):
            raise TypeError(f"variant {self.name!r}: its {name} {value!r} must live in {layer}")
        return getattr(importlib.import_module(module), attr)


VARIANTS: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    """Add `variant` to `VARIANTS`; a duplicate name, options that are not a frozen dataclass, or a
    baseline that is not registered is an error."""
    if variant.name in VARIANTS:
        raise ValueError(f"attention variant {variant.name!r} is already registered")
    params = getattr(variant.options, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"variant {variant.name!r}: options {variant.options!r} must be a frozen dataclass")
    if variant.compared_with is not None and variant.compared_with not in VARIANTS:
        raise ValueError(f"variant {variant.name!r} is compared with {variant.compared_with!r}, which is not "
                         f"registered: register the baseline first")
    VARIANTS[variant.name] = variant
    return variant


def unregister(name: str) -> None:
    """Remove variant `name` (a test's own variant, when it is done)."""
    if any(v.compared_with == name for v in VARIANTS.values() if v.name != name):
        raise ValueError(f"variant {name!r} is the baseline of others: unregister them first")
    del VARIANTS[name]


def get(name: str) -> Variant:
    """The variant registered as `name`."""
    if name not in VARIANTS:
        raise UserError(f"unknown attention {name!r}: use one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


def names() -> tuple[str, ...]:
    """Every registered variant's name, in registration order (the baseline first)."""
    return tuple(VARIANTS)


def baseline() -> str:
    """The variant the others are compared with (the one with `compared_with` None): dot-product
    attention, the attention of pretrained checkpoints and of the teacher."""
    (base,) = [v.name for v in VARIANTS.values() if v.compared_with is None]
    return base


def subjects() -> tuple[str, ...]:
    """The variants the study is about (`Variant.subject`), in registration order."""
    return tuple(v.name for v in VARIANTS.values() if v.subject)


def options_from_dict(name: str, data: dict[str, Any] | None, legacy: dict[str, Any] | None = None) -> Any:
    """Variant `name`'s options from their JSON form `data` (None: from the flat `legacy` keys of an
    older EncoderConfig, defaults for the rest); UserError for an unknown key."""
    cls = get(name).options
    if data is None:
        renames = getattr(cls, "legacy", {})
        data = {renames[k]: v for k, v in (legacy or {}).items() if k in renames}
    known = {f.name for f in dataclasses.fields(cls)}
    if not isinstance(data, dict) or set(data) - known:
        raise UserError(f"attention options {data!r} do not fit {name!r} (known: {', '.join(sorted(known)) or 'none'})")
    return cls(**data)


def legacy_keys() -> set[str]:
    """Every flat EncoderConfig key an older checkpoint may hold for some variant's options."""
    return {k for v in VARIANTS.values() for k in getattr(v.options, "legacy", {})}


register(Variant("dot", NoOptions,
                 float_module="models.attention:DotAttention",
                 quantized_module="quant.qat.attention:QDotAttention",
                 synthesis="quant.intops.synth:DOT"))
register(Variant("inhibitor", InhibitorOptions,
                 float_module="models.attention:InhibitorAttention",
                 quantized_module="quant.qat.attention:QInhibitorAttention",
                 synthesis="quant.intops.synth:INHIBITOR",
                 calibration="quant.train.distill:calibrate_inhibitor",
                 compared_with="dot", subject=True))
register(Variant("symmetric", NoOptions,
                 float_module="models.attention:SymmetricAttention",
                 quantized_module="quant.qat.attention:QSymmetricAttention",
                 synthesis="quant.intops.synth:SYMMETRIC",
                 compared_with="dot"))
