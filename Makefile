# cni-metrics-lambda: every developer and CI command goes through here.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.13 (the Lambda runtime we target); pyenv on this image has it.
PYTHON313 ?= $(shell PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || command -v python3.13)
VENV := .venv
PY := $(VENV)/bin/python
# aws-sam-cli pins boto3 exactly: it lives in its own virtual environment.
SAM_VENV := .sam-venv
SAM := $(SAM_VENV)/bin/sam
export AWS_EC2_METADATA_DISABLED := true
export SAM_CLI_TELEMETRY := 0
# sam runs with Python 3.13 on PATH (BuildMethod python3.13). Local runs need the host's architecture
# (the layer holds compiled wheels): build-local builds for it into .aws-sam/local/build, while
# build makes the deployable artifact (.aws-sam/build, the template's arm64) that `sam deploy` uses.
SAM_ENV := PATH="$(dir $(PYTHON313)):$$PATH" PYENV_VERSION=3.13.0
HOST_ARCH := $(shell uname -m | sed -e 's/aarch64/arm64/')
# events/dashboard-*.json are the dashboard function's, events/fleet/dispatcher-*.json the fleet dispatcher's
# (its stand-ins add a fleet document and an Invoke API serving the collector), the others the collector's.
EVENT_FUNCTION ?= $(if $(filter dashboard-%,$(notdir $(EVENT))),DashboardFunction,$(if $(filter dispatcher-%,$(notdir $(EVENT))),DispatcherFunction,CollectorFunction))

.PHONY: help venv lint typecheck unit integration e2e test bench demo demo-fleet build build-local validate invoke \
	stand-ins clean mutate

help:
	@echo "make demo   - run the collector on the embedded local EKS stand-in and local AWS endpoints"
	@echo "make demo-fleet - fleet-500 fanned out by the built dispatcher through the local Invoke API"
	@echo "make test   - ruff, mypy --strict and every test tier"
	@echo "make bench  - benchmarks (parse/aggregate, scrape at scale, fleet); make bench fleet - one of them"
	@echo "make build  - sam build (deployable, arm64);  make validate - sam validate --lint + cfn-lint"
	@echo "make invoke EVENT=events/<file>.json - the built function under the Lambda runtime client, against local stand-ins"
	@echo "make stand-ins - moto, the fake EKS and a CloudFormation receiver on the ports of events/env.json (sam local invoke)"

$(VENV)/.installed: pyproject.toml layers/cni_metrics/requirements.txt
	@test -n "$(PYTHON313)" || { echo "python3.13 not found (pyenv install 3.13.0)"; exit 1; }
	test -x $(PY) || $(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

$(SAM_VENV)/.installed:
	test -x $(SAM_VENV)/bin/python || $(PYTHON313) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q --upgrade pip
	$(SAM_VENV)/bin/pip install -q aws-sam-cli
	touch $@

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy --strict --explicit-package-bases layers/cni_metrics/cni_metrics functions  # two app.py
	$(VENV)/bin/mypy --strict --explicit-package-bases devtools bench tests

unit: venv
	$(PY) -m pytest tests/unit -q

integration: venv
	$(PY) -m pytest tests/integration tests/fake_eks -q

e2e: venv build-local
	$(PY) -m pytest tests/e2e -q

test: venv lint typecheck validate build build-local
	$(PY) -m pytest -q

# `make bench` runs every benchmark; `make bench fleet scrape` only those (the names are goals of their own,
# made no-ops below while bench is among the goals).
BENCHMARKS := $(filter-out bench,$(MAKECMDGOALS))
# the fleet benchmark runs the built artifact
bench: venv $(if $(or $(filter fleet,$(BENCHMARKS)),$(if $(BENCHMARKS),,all)),build-local)
	$(PY) -m bench $(BENCHMARKS)

ifneq ($(filter bench,$(MAKECMDGOALS)),)
$(BENCHMARKS):
	@:
endif

# Mutation score of the pure core (devtools/mutate): each mutant of core/aggregate.py, state_codec.py, node.py
# and metric_sets.py against the module's own unit tests; fails below 95 % (about 5 minutes on one core).
mutate: venv
	PYTHONPATH=devtools $(PY) -m mutate

demo: venv
	$(PY) -m cni_demo

# 500 clusters, each stand-in a process, the built functions behind the local Invoke API (about 3 minutes).
demo-fleet: venv build-local
	$(PY) -m cni_demo.fleet

validate: venv $(SAM_VENV)/.installed
	$(SAM) validate --lint --region us-east-1
	$(VENV)/bin/cfn-lint template.yaml deploy/cross-account-role.yaml

build: $(SAM_VENV)/.installed
	$(SAM_ENV) $(SAM) build --cached

# Run from .aws-sam/local: sam keeps its dependency cache in ./.aws-sam/deps and prunes entries of other builds.
build-local: $(SAM_VENV)/.installed
	mkdir -p .aws-sam/local && cd .aws-sam/local && $(SAM_ENV) ../../$(SAM) build --cached \
		--template-file ../../template.yaml --build-dir build --cache-dir cache \
		--parameter-overrides Architecture=$(HOST_ARCH)

invoke: venv build-local
	@test -n "$(EVENT)" || { echo "usage: make invoke EVENT=events/<file>.json"; exit 2; }
	$(PY) -m local_lambda invoke --function $(EVENT_FUNCTION) --event $(EVENT) --env-vars events/env.json \
		--stand-ins demo

stand-ins: venv
	$(PY) -m local_lambda stand-ins --scenario demo --env-vars events/env.json --docker-env-vars events/env.docker.json

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache .demo .bench
