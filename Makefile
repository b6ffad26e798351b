# `make demo`: create .venv, install, train on built-in digits and sample.  `make test`: run the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PIP := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: demo test bench clean

# torch first, pinned to the local CPU build; every later install is constrained to it so no
# resolver ever pulls the CUDA build.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -c constraints.txt -e ".[all,text,audio,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/unnoise demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/demo_quality.py --json

clean:
	rm -rf runs .pytest_cache
