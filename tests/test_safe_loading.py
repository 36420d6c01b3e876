"""Safe loading: checkpoints load only through safetensors or `torch.load(weights_only=True)`, so a
pickle that would run code is refused without running it; ONNX external data must stay inside the
model's folder."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from hwsim.sim.graph import SimError, load_plan
from models.errors import UserError


class _Payload:
    """Unpickling this object calls `os.system`, creating the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _write_payload(path: Path, marker: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump({"encoder.weight": _Payload(marker)}, f)


def test_payload_is_live(tmp_path):
    """Control: the payload really runs code when unpickled unsafely."""
    marker = tmp_path / "ran"
    _write_payload(tmp_path / "p.bin", marker)
    with open(tmp_path / "p.bin", "rb") as f:
        pickle.load(f)  # noqa: S301 - the point of the control
    assert marker.exists()


def test_pickle_weights_refused_in_hf_folder(tmp_path, tiny_distilbert_cls_bin_dir):
    from models.loading import load_pretrained
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_bytes((tiny_distilbert_cls_bin_dir / "config.json").read_bytes())
    marker = tmp_path / "ran"
    _write_payload(folder / "pytorch_model.bin", marker)
    with pytest.raises(UserError, match="cannot read the weights"):
        load_pretrained(folder)
    assert not marker.exists()


def test_pickle_training_checkpoint_refused(tmp_path):
    from quant.train.checkpoint import load_state
    marker = tmp_path / "ran"
    _write_payload(tmp_path / "step-0000001.pt", marker)
    with pytest.raises(UserError, match="cannot read the training checkpoint"):
        load_state(tmp_path / "step-0000001.pt")
    assert not marker.exists()


def _external_model(folder: Path, location: str) -> Path:
    """A one-initializer integer model whose data lives at `location` (relative to `folder`)."""
    from tests.strategies import ProgBuilder
    from export import to_onnx
    p = ProgBuilder()
    word = p.param("word", np.ones((4, 2), np.int64), 8)
    pos = p.param("pos", np.zeros((4, 2), np.int64), 8)
    emb = p.node("Embed", "emb", ("input_ids", word, pos), 32, lw=0, lp=0, lt=0)
    p.node("TakeFirst", "logits", (emb,), 32)
    model = to_onnx(p.program({}))
    init = next(t for t in model.graph.initializer if t.name == "word")
    raw = numpy_helper.to_array(init).tobytes()
    (folder / "inside.bin").write_bytes(raw)
    init.ClearField("raw_data")
    init.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": str(len(raw))}.items():
        init.external_data.add(key=key, value=value)
    path = folder / "model.onnx"
    onnx.save(model, str(path))
    return path


def test_external_data_inside_folder_loads(tmp_path):
    plan = load_plan(_external_model(tmp_path, "inside.bin"))
    assert plan.params["word"].tolist() == [[1, 1]] * 4


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/hostname", "sub/../../secret.bin"])
def test_external_data_outside_folder_refused(tmp_path, location):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(bytes(8))
    path = _external_model(folder, location)
    with pytest.raises(SimError, match="does not resolve to a file inside"):
        load_plan(path)


def test_external_data_symlink_out_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(bytes(8))
    (folder / "link.bin").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(SimError, match="does not resolve to a file inside"):
        load_plan(_external_model(folder, "link.bin"))
