#!/usr/bin/env bash
# The project as a user installs it: build a wheel, install it NON-editable into a throwaway venv
# (dependencies borrowed from the project's .venv, so nothing is downloaded twice), then run
# `hwsim run` from outside the checkout on a tiny model exported by the project's own CLI.
# Fails when the wheel misses a package or data file (hwsim/sim/kernels, hwsim/cost/data, hwsim/sim/configs, hwsim/cost/scenarios).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$root/.venv/bin/python" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" "$root"
wheel=$(ls "$work"/dist/*.whl)
python3 -m venv "$work/venv"
site=$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
deps=$("$root/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$deps" > "$site/borrowed_deps.pth"   # a path line only: the .venv's editable finder is not loaded
"$work/venv/bin/python" -m pip install -q --no-deps --no-index "$wheel"
echo '{"hidden": 32, "layers": 1, "heads": 2, "ffn": 64, "max_position": 64, "type_vocab_size": 2, "pooler": "bert"}' > "$work/tiny.json"
HF_HUB_OFFLINE=1 "$root/.venv/bin/hwsim" export --init random --arch "$work/tiny.json" --attention inhibitor \
  --bits 8 --out "$work/tiny.onnx"
cd "$work"   # away from the checkout: only the installed wheel can be imported
"$work/venv/bin/python" - <<'PY'
import hwsim, pathlib
where = pathlib.Path(hwsim.__file__).resolve()
assert "site-packages" in where.parts, f"hwsim imported from {where}, not from the installed wheel"
print("hwsim imported from", where.parent)
PY
HF_HUB_OFFLINE=1 "$work/venv/bin/hwsim" run "$work/tiny.onnx" --text "a gripping, funny film" --text "dull" \
  --check-ort --report "$work/run.json"
"$work/venv/bin/python" -c "import json,sys; r=json.load(open('$work/run.json')); print('wheel check: hwsim run from the installed wheel ok,', r.get('samples', r.get('n_samples')), 'samples')"
