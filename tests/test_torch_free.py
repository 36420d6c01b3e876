"""The simulator runs without the training stack: with `torch` (and Brevitas) not importable,
`hwsim.simulate` loads an exported model and returns the same integers as with it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import hwsim
from export.save import save_model
from export.onnx_lower import to_onnx
from quant.intops.synth import SynthConfig, synth_program

ROOT = Path(__file__).resolve().parents[1]

BLOCKED = r"""
import importlib.abc, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "brevitas"):
            raise ImportError(f"{name} is blocked in this test: hwsim must run without it")
        return None

sys.meta_path.insert(0, Blocked())
import json
import numpy as np
import hwsim
ids = np.array(json.loads(sys.argv[2]), dtype=np.int64)
res = hwsim.simulate(sys.argv[1], ids)
assert "torch" not in sys.modules and "brevitas" not in sys.modules
print(json.dumps({"logits": res.outputs["logits"].tolist(), "dtype": str(res.outputs["logits"].dtype),
                  "nodes": len(res.counts)}))
"""


def test_simulate_runs_with_torch_blocked(tmp_path):
    path = tmp_path / "tiny.onnx"
    save_model(to_onnx(synth_program(SynthConfig(attention="inhibitor", center=True, signed=True))), path)
    ids = [[1, 5, 9, 3, 2], [4, 4, 7, 1, 0]]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", BLOCKED, str(path), json.dumps(ids)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    expected = hwsim.simulate(path, np.array(ids))
    assert got["dtype"].startswith("int")
    assert got["logits"] == expected.outputs["logits"].tolist()
    assert got["nodes"] == len(expected.counts)
