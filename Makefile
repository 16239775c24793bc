# PAPA reproduction. `make figures` runs the pipeline, `make test` runs the tests; each sets itself up.
# A virtual environment is created in .venv on first use (no conda needed).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PROFILE ?= cpu       # smoke (a few minutes; the tests run its notebooks 1-6) | cpu (default, one protocol for every model) | cpu-robustness | paper (GPU + Hub) | paper-dry (tiny random models)
MODELS  ?=           # optional comma-separated subset of the profile's models
TASKS   ?=           # optional comma-separated subset of the profile's tasks
RANKING ?=           # optional: how the partial sweep orders the heads (gates, input_dependence, variance, random)
PASSES  ?= packed    # backbone passes over real tokens only (packed) or over the whole layout (padded, the reference)
RUN_DIR ?=           # optional run folder; default runs/<profile>, or runs/<profile>__<models>__<tasks> when narrowed
NOTEBOOKS ?=         # optional comma-separated subset of the notebooks, e.g. 02_probe_baselines (default: all, in order)
EXECUTOR ?=          # optional: how each (model, task) cell's steps run: local (each cell its own process; the default when every notebook runs) | inprocess (the default with NOTEBOOKS) | slurm (docs/paper_profile.md)
WORKERS ?=           # optional, local executor: cells at the same time (default: one per GPU, else one)
SLURM_CONFIG ?=      # EXECUTOR=slurm: a YAML file of Slurm options (docs/paper_profile.md); the SLURM_* variables below override it
SLURM_PARTITION ?=
SLURM_ACCOUNT ?=
SLURM_QOS ?=
SLURM_GPUS ?=        # GPUs per job (default 1)
SLURM_CPUS ?=        # CPUs per job (default 8)
SLURM_MEM ?=         # GB per job (default 64)
SLURM_TIME ?=        # minutes per job (default 2880)
TORCH_INDEX ?=       # optional: an index of CPU builds of torch, for a pip that reaches only the default index (docs/install.md)
export PAPA_CACHE_DIR ?= $(HOME)/.cache/papa

.PHONY: setup lock figures publish verify test test-all bench scrub clean

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock \
	  $(if $(strip $(TORCH_INDEX)),--extra-index-url $(strip $(TORCH_INDEX))) \
	  || { echo "setup: installing requirements.lock failed. It is made for Python 3.11 on Linux x86-64 and pins the CPU build of torch (torch==2.13.0+cpu): if your pip reaches only the default index, run make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu (docs/install.md)"; exit 1; }
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .  # built with the locked setuptools
	touch $@

setup: $(VENV)/.installed  # every package at the version and hash requirements.lock pins, then this checkout

lock:  # resolve requirements.lock again from pyproject.toml, keeping its versions where they still fit (UPGRADE=1: the newest)
	test -x .lock-venv/bin/pip-compile || { $(PYTHON) -m venv .lock-venv && .lock-venv/bin/pip install --quiet pip-tools; }
	.lock-venv/bin/pip-compile --generate-hashes --allow-unsafe --extra mpnet --extra test --extra notebook --strip-extras \
	  --no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade) -o requirements.lock pyproject.toml

figures: setup  # results, tables and figures go into the run folder, never over published ones
	$(PY) -m papa_utils.runner.pipeline --profile $(strip $(PROFILE)) $(if $(strip $(RUN_DIR)),--run-dir $(strip $(RUN_DIR))) \
	  $(if $(strip $(MODELS)),--models $(strip $(MODELS))) $(if $(strip $(TASKS)),--tasks $(strip $(TASKS))) \
	  $(if $(strip $(RANKING)),--ranking $(strip $(RANKING))) --passes $(strip $(PASSES)) \
	  $(if $(strip $(NOTEBOOKS)),--notebooks $(strip $(NOTEBOOKS))) \
	  $(if $(strip $(EXECUTOR)),--executor $(strip $(EXECUTOR))) $(if $(strip $(WORKERS)),--workers $(strip $(WORKERS))) \
	  $(if $(strip $(SLURM_CONFIG)),--slurm-config $(strip $(SLURM_CONFIG))) \
	  $(if $(strip $(SLURM_PARTITION)),--slurm partition=$(strip $(SLURM_PARTITION))) \
	  $(if $(strip $(SLURM_ACCOUNT)),--slurm account=$(strip $(SLURM_ACCOUNT))) \
	  $(if $(strip $(SLURM_QOS)),--slurm qos=$(strip $(SLURM_QOS))) \
	  $(if $(strip $(SLURM_GPUS)),--slurm gpus_per_node=$(strip $(SLURM_GPUS))) \
	  $(if $(strip $(SLURM_CPUS)),--slurm cpus_per_task=$(strip $(SLURM_CPUS))) \
	  $(if $(strip $(SLURM_MEM)),--slurm mem_gb=$(strip $(SLURM_MEM))) \
	  $(if $(strip $(SLURM_TIME)),--slurm timeout_min=$(strip $(SLURM_TIME)))

publish: setup  # copy a finished run to results/<profile>/ and figures/<profile>/, regenerate the README block
	$(PY) -m papa_utils.reports.publish $(or $(strip $(RUN_DIR)),runs/$(strip $(PROFILE)))

verify: setup  # compute a slice of a published run again from scratch (a temporary folder) and compare every row
	$(PY) -m papa_utils.runner.verify --profile $(strip $(or $(PUBLISHED),cpu)) \
	  $(if $(strip $(MODELS)),--models $(strip $(MODELS))) $(if $(strip $(TASKS)),--tasks $(strip $(TASKS)))

test: setup  # the fast tier: unit tests, the smoke run's pipeline, paper-dry cells as jobs (docs/tests.md: how long)
	$(PY) -m pytest tests -m "not slow" -p no:cacheprovider -q

test-all: setup  # fast + slow tiers + every notebook through nbval (what CI runs; docs/tests.md: how long)
	$(PY) -m pytest tests notebooks --nbval-lax -p no:cacheprovider -q --durations=20

bench: setup  # speed ratios measured side by side in one run -> results/bench.md
	$(PY) benchmarks/bench.py

scrub:  # strip outputs from the committed notebooks
	$(VENV)/bin/nbstripout notebooks/*.ipynb

clean:  # run folders only; published results stay
	rm -rf runs
