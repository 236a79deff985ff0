# plasticity-bench: the front door. `make help` lists targets and variables.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

AGENT ?= dqn
INTERVENTION ?= none
SEED ?= 0
STEPS ?=
RUN_DIR ?= runs
ARGS ?=
RUNS ?= runs
OUT ?= figures
LAUNCHER ?= local
NPROC := $(shell env -u OMP_NUM_THREADS nproc 2>/dev/null || echo 1)
JOBS ?= $(NPROC)
THREADS ?= $(shell echo $$(( $(NPROC) / $(JOBS) > 0 ? $(NPROC) / $(JOBS) : 1 )))
EXPERIMENTS = $(sort $(basename $(notdir $(wildcard plasticity_bench/configs/experiment/*.yaml))))
# the agent registry: every @register("name") under agents/ (read without Python: make help needs no .venv)
AGENTS = $(sort $(shell sed -n 's/^@register("\([a-z0-9_]*\)")/\1/p' plasticity_bench/agents/*.py))

space := $(subst ,, )

RUN_ARGS = agent=$(AGENT) intervention=$(INTERVENTION) seed=$(SEED) run_dir=$(RUN_DIR) \
	$(if $(GAME),env.game=$(GAME)) $(if $(STEPS),total_steps=$(STEPS)) $(if $(POPULATION),population=$(POPULATION)) $(ARGS)

# A variable typed on the command line that no target reads (STEP=, steps=) would be ignored without
# a word: refuse it. (Values with spaces, ARGS="a=1 b=2", come escaped: "\ " joined first.)
VARIABLES := AGENT INTERVENTION GAME SEED STEPS RUN_DIR ARGS POPULATION TASK EXPERIMENT LAUNCHER JOBS \
	THREADS DRY RUNS OUT FIGURE_ARGS BENCH_ARGS PYTHON
GIVEN := $(foreach a,$(subst \$(space),:,$(MAKEOVERRIDES)),$(firstword $(subst =, ,$(a))))
ifneq ($(filter-out $(VARIABLES),$(GIVEN)),)
$(error unknown variable $(firstword $(filter-out $(VARIABLES),$(GIVEN))); valid: $(VARIABLES) (make help; Hydra keys go in ARGS="key=value"))
endif

.PHONY: help atari minatar classic shifts sweep figures pages bench test lint clean-venv

help: ## this list
	@echo "targets:"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-12s %s\n", $$1, $$2}'
	@echo "variables (for atari / minatar / classic):"
	@echo "  AGENT=$(subst $(space),|,$(AGENTS))      agent (registry: plasticity_bench/agents/)"
	@echo "  INTERVENTION=none         intervention name or a_b composition"
	@echo "  GAME=...                  Atari game (default Breakout), MinAtar game (default breakout) or"
	@echo "                            classic game (CartPole, Acrobot, LunarLander; default CartPole)"
	@echo "  SEED=0  STEPS=N           seed; agent steps summed over envs (default: the suite's budget)"
	@echo "  RUN_DIR=runs              root of the run directories"
	@echo "  POPULATION=K              train seeds SEED..SEED+K-1 in one process (population=K)"
	@echo "  ARGS=\"k=v ...\"            raw Hydra overrides, e.g. ARGS=\"agent.lr=1e-4 probe.interval=50000\""
	@echo "variables (for shifts):"
	@echo "  TASK=label_reset          label_reset label_permutation input_permutation target_offset"
	@echo "                            target_scale abrupt_shift smooth_shift; INTERVENTION, SEED, RUN_DIR, ARGS as above"
	@echo "variables (for sweep):"
	@echo "  EXPERIMENT=name           one of: $(EXPERIMENTS) (plasticity_bench/configs/experiment/)"
	@echo "  LAUNCHER=local|slurm      joblib on this machine or Slurm"
	@echo "  JOBS=$(JOBS) THREADS=$(THREADS)         local: runs at once, torch threads each (default: cores / JOBS)"
	@echo "  DRY=1                     list the jobs (new / resume / done) and launch nothing"
	@echo "  POPULATION=K              pack the seeds into populations of K per process (population=K)"
	@echo "  RUN_DIR, ARGS             as above; ARGS overrides every job (a,b sweeps a key)"
	@echo "variables (for figures):"
	@echo "  RUNS=runs OUT=figures     folder of runs; where tables/ and the figures go"
	@echo "  FIGURE_ARGS=\"...\"         e.g. \"--final-fraction 0.1 --reps 2000 --bins 40\" (python -m plasticity_bench figures -h)"
	@echo "variables (for bench):"
	@echo "  POPULATION=2,4            also time populations of these sizes against separate processes"
	@echo "                            (minutes per size: docs/speed.md)"
	@echo "  BENCH_ARGS=\"...\"          e.g. \"--quick\", \"--population-only\" (python -m plasticity_bench bench -h)"
	@echo "other: PYTHON=python3 (the interpreter that creates .venv)"

$(STAMP): pyproject.toml
	@echo "creating $(VENV) (first use only)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]' 2>&1 | grep -v "is ignored: it is neither" || test $${PIPESTATUS[0]} -eq 0
	@touch $@

atari: $(STAMP) ## one Atari run via EnvPool: make atari AGENT=dqn INTERVENTION=none GAME=Breakout
	$(PY) -m plasticity_bench run env=atari $(RUN_ARGS)

minatar: $(STAMP) ## one MinAtar run: make minatar AGENT=dqn GAME=breakout
	$(PY) -m plasticity_bench run env=minatar $(RUN_ARGS)

classic: $(STAMP) ## one classic-control run (CartPole, Acrobot, LunarLander): make classic AGENT=ppo GAME=CartPole
	$(PY) -m plasticity_bench run env=classic $(RUN_ARGS)

POPULATION_ARG = $(if $(POPULATION),population=$(POPULATION))

TASK ?= label_reset
shifts: $(STAMP) ## one supervised task sequence: make shifts TASK=label_reset INTERVENTION=ln_l2
	$(PY) -m plasticity_bench shifts task=$(TASK) intervention=$(INTERVENTION) seed=$(SEED) run_dir=$(RUN_DIR) $(ARGS)

sweep: $(STAMP) ## an experiment's runs (games x seeds x interventions): make sweep EXPERIMENT=minatar_ln_l2
	@if [ ! -f plasticity_bench/configs/experiment/$(EXPERIMENT).yaml ]; then \
	  echo "error: unknown experiment '$(EXPERIMENT)'; valid: $(EXPERIMENTS)" >&2; exit 2; fi
	@if [ "$(LAUNCHER)" != local ] && [ "$(LAUNCHER)" != slurm ]; then \
	  echo "error: unknown launcher '$(LAUNCHER)'; valid: local, slurm" >&2; exit 2; fi
	@# every job's config is checked (and listed with DRY=1) before anything is launched
	$(PY) -m plasticity_bench sweep $(if $(DRY),--plan,--check) +experiment=$(EXPERIMENT) run_dir=$(RUN_DIR) $(POPULATION_ARG) $(ARGS)
	$(if $(DRY),,$(PY) -m plasticity_bench sweep --multirun +experiment=$(EXPERIMENT) hydra/launcher=$(LAUNCHER) run_dir=$(RUN_DIR) $(POPULATION_ARG) \
	  $(if $(filter local,$(LAUNCHER)),hydra.launcher.n_jobs=$(JOBS) threads=$(THREADS),threads='$${hydra:launcher.cpus_per_task}') $(ARGS))

figures: $(STAMP) ## IQM figures and tables from the CSVs: make figures RUNS=runs OUT=figures
	$(PY) -m plasticity_bench figures $(RUNS) $(OUT) $(FIGURE_ARGS)

pages: $(STAMP) ## put the generated tables (make figures, make bench) into docs/experiments/*.md, docs/speed.md and README.md
	$(PY) -m plasticity_bench.analysis.pages docs/experiments/*.md docs/speed.md README.md

bench: $(STAMP) ## speed and memory on this machine (about 10 minutes on 2 cores): one table, bench_results.csv; POPULATION=2,4 adds population rows
	$(PY) -m plasticity_bench bench $(if $(POPULATION),--population $(POPULATION)) $(BENCH_ARGS)

test: $(STAMP) ## the fast test suite (what CI runs), one worker per core, one torch thread each
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(NPROC) --dist worksteal

lint: $(STAMP) ## ruff: style and imports (pyproject.toml [tool.ruff]; `ruff format .` fixes most)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check --quiet .

clean-venv: ## remove the virtual environment
	rm -rf $(VENV)
