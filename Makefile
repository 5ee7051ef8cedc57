# Set-up and everyday commands. Each target creates .venv and installs requirements.txt first if needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install test demo pose-demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	@test -n "$(PYTHON)" || { echo "no python3.11 or python3 on PATH: install Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

test: install
	$(PY) -m pytest -q tests

# The whole pipeline, resumable and incremental (python -m handavatar.demo --help); e.g. make demo ARGS=--list
demo: install
	$(PY) -m handavatar.demo $(ARGS)

pose-demo: install
	$(PY) -m smplx.demo --out out/pose_demo

bench: install
	$(PY) -m bench.pose_hd

clean:
	rm -rf $(VENV) .pytest_cache out
