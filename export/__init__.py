"""IntProgram -> integer-only ONNX (docs/DESIGN.md, "ONNX contract").

- `to_onnx(prog)`: the model, one `hwsim.int` function overload per (op, storage types);
- `validate(model)`: lowering, integer-only and `onnx.checker` (full) checks, `ExportError` on failure;
- `save_model(model, path)`: validate, then write atomically.
"""
from export.checks import ExportError, validate
from export.onnx_lower import op_model, to_onnx
from export.save import save_model

__all__ = ["ExportError", "op_model", "save_model", "to_onnx", "validate"]
