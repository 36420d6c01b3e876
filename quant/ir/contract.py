"""The ONNX contract between export and hwsim (docs/DESIGN.md, "ONNX contract"), in one place: the
custom domain, the `metadata_props` keys and the model facts of `hwsim.meta` with their types, and
writing and reading them.

Torch- and onnx-free, beside the op spec, so that the exporter (which writes a model) and the
simulator (which reads one) import the same definitions without importing each other. Errors are
`ValueError`s naming the key; the exporter and the simulator turn them into their own user errors.

`metadata_props` of an exported model (each value a JSON text):

| key                   | value                                                        |
|-----------------------|--------------------------------------------------------------|
| `hwsim.tensor_bits`   | {tensor: declared bits} (required)                           |
| `hwsim.tensor_signed` | {tensor: two's complement?} (absent tensor: signed)          |
| `hwsim.tensor_exp`    | {tensor: exp of `real = int * 2**-exp`, or null}             |
| `hwsim.meta`          | `ModelMeta`: the model facts a runner needs                  |
"""
from __future__ import annotations

import json
import typing
from typing import Mapping, TypedDict

from quant.ir.program import TensorInfo

DOMAIN = "hwsim.int"
"""The ONNX domain of the semantic ops (and of their model-local functions)."""
DOMAIN_VERSION = 1

TENSOR_BITS, TENSOR_SIGNED, TENSOR_EXP = "hwsim.tensor_bits", "hwsim.tensor_signed", "hwsim.tensor_exp"
META = "hwsim.meta"


class ModelMeta(TypedDict, total=False):
    """`hwsim.meta`: the model facts a runner needs (`IntProgram.meta`). Every key may be absent
    (hand-built programs carry few; models exported before a key existed lack it); a present key
    has its type. A key not declared here is refused at export."""

    vocab_size: int
    max_position: int              # rows of the position table: the longest input the model runs
    hidden: int
    heads: int
    layers: int
    ffn: int
    attention: str                 # the attention variant (dot, inhibitor, symmetric)
    bits: int                      # activation width
    weight_bits: int
    num_labels: int
    logits_exp: int                # real logits = int * 2**-logits_exp
    center: bool                   # the inhibitor's options
    signed: bool
    pooler: str
    tokenizer: str | None          # a folder holding the tokenizer the model was trained with
    task: str                      # the task it was trained on (names its labels)
    max_length: int                # the truncation it was trained and evaluated with


META_TYPES: Mapping[str, object] = typing.get_type_hints(ModelMeta)
"""`hwsim.meta` key -> its type (from `ModelMeta`)."""


def _is(value: object, hint: object) -> bool:
    """Whether `value` has type `hint` (a class or a union of classes; a bool is not an int).

    >>> _is(3, int), _is(True, int), _is(None, str | None), _is("a", str | None)
    (True, False, True, True)
    """
    options = typing.get_args(hint) or (hint,)
    return any(value is None if t is type(None) else isinstance(value, t) and not (t is int and isinstance(value, bool))
               for t in options)


def check_meta(meta: Mapping[str, object], unknown_ok: bool = False) -> ModelMeta:
    """`meta` as a `ModelMeta`, after checking the type of every declared key; ValueError naming
    the key otherwise, and for an undeclared key unless `unknown_ok` (a reader keeps, and ignores,
    what a newer exporter wrote)."""
    for key, value in meta.items():
        if key not in META_TYPES:
            if unknown_ok:
                continue
            raise ValueError(f"hwsim.meta key {key!r} is not declared; declare it in quant.ir.contract.ModelMeta "
                             f"(known: {', '.join(META_TYPES)})")
        if not _is(value, META_TYPES[key]):
            raise ValueError(f"hwsim.meta {key}={value!r} is not of type {_type_name(META_TYPES[key])}")
    return ModelMeta(**meta)


def _type_name(hint: object) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in (typing.get_args(hint) or (hint,)))


def metadata_props(tensors: Mapping[str, TensorInfo], meta: Mapping[str, object]) -> dict[str, str]:
    """The `metadata_props` (key -> JSON text) that declare `tensors` and `meta`; ValueError for a
    `meta` key that `ModelMeta` does not declare or of the wrong type."""
    names = sorted(tensors)
    return {
        TENSOR_BITS: json.dumps({n: tensors[n].bits for n in names}),
        TENSOR_SIGNED: json.dumps({n: tensors[n].signed for n in names}),
        TENSOR_EXP: json.dumps({n: tensors[n].exp for n in names}),
        META: json.dumps(dict(check_meta(meta)), sort_keys=True),
    }


def read_metadata(props: Mapping[str, str], source: str = "the model") -> tuple[dict[str, TensorInfo], ModelMeta]:
    """Declared tensor formats and `hwsim.meta` from a model's `metadata_props` (key -> value), the
    inverse of `metadata_props`; ValueError when the widths are absent or a value is malformed."""
    if TENSOR_BITS not in props:
        raise ValueError(f"{source} has no {TENSOR_BITS} metadata: declared widths are needed; "
                         "export the model with `hwsim export` (export.onnx_lower.to_onnx)")
    try:
        bits = json.loads(props[TENSOR_BITS])
        signed = json.loads(props.get(TENSOR_SIGNED, "{}"))
        exps = json.loads(props.get(TENSOR_EXP, "{}"))
        meta = json.loads(props.get(META, "{}"))
        if not isinstance(meta, dict):
            raise ValueError(f"{META} is not a JSON object")
        meta = check_meta(meta, unknown_ok=True)
    except ValueError as err:   # json.JSONDecodeError included
        raise ValueError(f"{source}: malformed hwsim metadata ({err}); re-export the model") from None
    tensors = {}
    for name, b in bits.items():
        exp = exps.get(name)
        tensors[name] = TensorInfo(int(b), bool(signed.get(name, True)), None if exp is None else int(exp))
    return tensors, meta
