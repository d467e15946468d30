PY := .venv/bin/python
PY_CURRENT := .venv-current/bin/python

.PHONY: setup setup-current demo test test-current bench models
setup:
	@bash scripts/setup.sh

# The newest dependency set (numpy 2, mediapipe 1.2 Tasks API, torch 2.15): its own venv and lock.
setup-current:
	@PALSYSIM_ENV=current bash scripts/setup.sh

demo: setup
	$(PY) -m palsysim demo --out out/demo

test: setup
	$(PY) -m pytest -q --durations=20 tests

test-current: setup-current
	$(PY_CURRENT) -m pytest -q --durations=20 tests

bench: setup
	$(PY) -m palsysim bench preprocess

models: setup
	$(PY) -m palsysim models
