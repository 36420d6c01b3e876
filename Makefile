# Two entry points, each creating its own environment first:
#   make demo   -> the main job on its embedded default
#   make test   -> the test suite
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,tables]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	HF_HUB_OFFLINE=1 $(VENV)/bin/hwsim demo

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -x -q

# SCALE-Sim (bench/scalesim_runner.py) in its own venv: it crashes under numpy 2
SCALESIM_VENV ?= .venv-scalesim

scalesim-venv:
	python3 -m venv $(SCALESIM_VENV)
	$(SCALESIM_VENV)/bin/python -m pip install -q scalesim==3.0.0 'numpy<2'

# the wheel as a user installs it (non-editable), `hwsim run` from it on a tiny exported model
wheel-check: setup
	bash .ci/wheel_check.sh

.PHONY: setup demo test wheel-check scalesim-venv
