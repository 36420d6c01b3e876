"""hwsim: bit-accurate simulation and action counting of integer-only ONNX encoders."""
from __future__ import annotations


def simulate(model_path, input_ids, attention_mask=None, overflow: str = "error", hw=None):
    """See `hwsim.sim.api.simulate` (imported lazily so that `hwsim --help` stays fast)."""
    from hwsim.sim.api import simulate as _simulate
    return _simulate(model_path, input_ids, attention_mask, overflow=overflow, hw=hw)


__all__ = ["simulate"]
