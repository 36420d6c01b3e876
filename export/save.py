"""Write an exported model atomically, after validating it: no file, or the complete checked one."""
from __future__ import annotations

import os

import onnx
from onnx import ModelProto

from export.checks import validate
from models.files import atomic_path


def save_model(model: ModelProto, path: str | os.PathLike) -> None:
    """Validate `model` (export.checks.validate) and write it to `path` through a temporary file.

    On any failure (the check, a full disk, an interrupt) the temporary file is removed and `path`
    is left as it was: no partial or unchecked model is ever written.
    """
    with atomic_path(path) as tmp:
        validate(model)
        onnx.save_model(model, tmp)
