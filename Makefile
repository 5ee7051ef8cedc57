# Set-up and everyday commands. Each target creates .venv and installs requirements.txt first if needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install video-install viewer test test-kill mutation demo pose-demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	@test -n "$(PYTHON)" || { echo "no python3.11 or python3 on PATH: install Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# The optional keypoint extra for your own video (mediapipe 0.10.21, numpy 1.26) in its own environment: the core
# .venv keeps numpy 2. --no-deps: requirements-video.txt pins the measured set that mediapipe's hands need.
VIDEO_VENV := .venv-video
video-install: $(VIDEO_VENV)/.installed

$(VIDEO_VENV)/.installed: requirements-video.txt
	@test -n "$(PYTHON)" || { echo "no python3.11 or python3 on PATH: install Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VIDEO_VENV)
	$(VIDEO_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-video.txt
	$(VIDEO_VENV)/bin/python -c "import mediapipe.python.solutions.hands"
	touch $@

# The web viewer (viewer/): three.js bundled by esbuild into viewer/dist/, and the Khronos glTF validator the export
# tests run. Needs Node.js and npm; offline once built.
viewer: viewer/dist/viewer.js

viewer/dist/viewer.js: viewer/package.json viewer/package-lock.json viewer/src/viewer.js viewer/src/index.html
	cd viewer && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

# The suite runs in TEST_WORKERS processes (pytest-xdist; default: the CPU count, at most 4; TEST_WORKERS=0 runs it in
# this process), each on one thread unless OMP_NUM_THREADS says otherwise, each test file in one worker (its
# module-scoped fixtures are built once).
TEST_WORKERS ?= $(shell n=$$(nproc 2> /dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)

test: install
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q -m "not kill" -n $(TEST_WORKERS) --dist loadfile tests

# The kill tests (tests/test_kill.py: trainers and the synthetic capture, tests/test_demo_kill.py: the demo runner,
# killed with SIGKILL and rerun; several minutes on 2 cores): CI runs them after `make test`.
test-kill: install
	$(PY) -m pytest -q -m kill tests

# Mutation testing of the core math (pyproject.toml [tool.mutmut]; not in CI: hours on 2 cores). Resumable: a rerun
# tests only the mutants not yet tested and the functions changed since. Lists the surviving mutants at the end;
# `.venv/bin/mutmut show NAME` prints one.
mutation: install
	$(PY) -m pip install --quiet --disable-pip-version-check mutmut==3.8.1
	OMP_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children 2
	$(VENV)/bin/mutmut results

# The whole pipeline, resumable and incremental (python -m handavatar.demo --help); e.g. make demo ARGS=--list
demo: install
	$(PY) -m handavatar.demo $(ARGS)

pose-demo: install
	$(PY) -m smplx.demo --out out/pose_demo

bench: install
	$(PY) -m bench.pose_hd

clean:
	rm -rf $(VENV) $(VIDEO_VENV) .pytest_cache out mutants
