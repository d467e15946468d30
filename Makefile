PY := .venv/bin/python

.PHONY: setup demo test bench
setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m palsysim demo --out out/demo

test: setup
	$(PY) -m pytest -q tests

bench: setup
	$(PY) -m palsysim bench preprocess
