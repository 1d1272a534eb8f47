# fusi-nmf: `make book` builds the book on the embedded simulated default,
# `make test` runs lint + tests. Both create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pytest-xdist workers for `make test` (auto: one per core; 0 runs in this process). Whole
# files go to one worker (--dist loadfile), so module-scoped fixtures are computed once.
TEST_WORKERS ?= auto

.PHONY: venv test lint book clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) lint
	FUSI_NMF_PROGRESS=0 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Execute every chapter notebook with papermill into book/, then build _build/html.
# Parameters pass through: make book DATASET=nunez-elizalde-2022 N_COMPONENTS=8
book: $(STAMP)
	$(PY) -m fusi_nmf book \
		$(if $(DATASET),--dataset $(DATASET)) \
		$(if $(PRESET),--preset $(PRESET)) \
		$(if $(N_COMPONENTS),--n-components $(N_COMPONENTS)) \
		$(BOOK_ARGS)

clean:
	rm -rf _build book/*.ipynb
