# Two commands a newcomer needs: `make train` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: train test install clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Main job: until the Omniglot benchmark lands, a short iMAML demonstration on
# sinusoid regression (a few minutes on a 2-core CPU).
train: $(STAMP)
	$(PY) -m experiments.sinusoid

test: $(STAMP)
	$(PY) -m pytest -q -n 2

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
