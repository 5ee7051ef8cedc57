# Set-up and everyday commands. Each target creates .venv and installs requirements.txt first if needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install test demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	@test -n "$(PYTHON)" || { echo "no python3.11 or python3 on PATH: install Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

test: install
	$(PY) -m pytest -q tests

demo: install
	$(PY) -m smplx.demo

bench: install
	$(PY) -m bench.pose_hd

clean:
	rm -rf $(VENV) .pytest_cache out
