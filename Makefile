# cosmos-nb: the two commands a newcomer needs (see README.md)
#   make demo   set up this machine and run the main job (the CPU demo)
#   make test   set up this machine and run every test (what CI runs)
SHELL := /bin/bash
VENV  ?= .venv
BIN   := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export PYTHONUNBUFFERED := 1

# torch first, with a pin that matches the machine: a bare `torch` range pulls a multi-GB CUDA build on a CPU box.
# torchcodec must match torch's build: 0.12/0.13 are PyPI's CPU wheels (they import beside a CPU torch 2.13);
# 0.14+ are CUDA builds that dlopen libtorch_cuda and fail to import next to a CPU torch.
ifeq ($(shell command -v nvidia-smi >/dev/null 2>&1 && echo gpu),gpu)
TORCH_SPEC      ?= torch>=2.11
TORCHCODEC_SPEC ?= torchcodec>=0.14
else
TORCH_SPEC      ?= torch==2.13.0
TORCHCODEC_SPEC ?= torchcodec>=0.12,<0.14
endif

.PHONY: demo test install system-deps check-sync nbtest pytest slurm-up clean run-nbs

demo: install
	$(BIN)/cosmos-nb demo

test: install check-sync nbtest pytest

SYSTEM_PKGS := ffmpeg chromium
system-deps:
	@# FFmpeg's shared libraries for torchcodec; Chromium for the docs browser test (Debian packages; apt-get works as root)
	@missing=""; command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then echo "installing:$$missing (apt-get)"; SUDO=$$( [ $$(id -u) = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; fi

$(BIN)/python:
	python3 -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/pip install -q --disable-pip-version-check -e ".[dev]" "$(TORCHCODEC_SPEC)"
	touch $@

install: system-deps $(VENV)/.installed

# CI fails when cosmos_nb/ is out of sync with nbs/ or notebooks are not clean
check-sync:
	$(BIN)/nbdev-export
	@git diff --exit-code --stat -- cosmos_nb || { echo "cosmos_nb/ is out of sync with nbs/: run nbdev-export and commit"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- cosmos_nb)" || { git status --short -- cosmos_nb; echo "nbdev-export wrote files that are not committed"; exit 1; }
	$(BIN)/nbdev-clean
	@git diff --exit-code --stat -- nbs || { echo "notebooks are not clean: run nbdev-clean and commit"; exit 1; }

nbtest:
	$(BIN)/nbdev-test --n-workers 2

# a real single-node SLURM (with accounting) for the submitit tests; the test fixture also starts it if needed
slurm-up:
	$$( [ $$(id -u) = 0 ] || echo sudo ) bash slurm/ci/up.sh

pytest: slurm-up
	$(BIN)/python -m pytest tests

clean:
	rm -rf _proc _docs outputs/demo

# Developers: execute notebooks in place (so the docs show their outputs), then strip metadata. NB=nbs/00_video.ipynb for one.
NB ?= $(wildcard nbs/*.ipynb)
run-nbs: install
	@for f in $(NB); do echo "executing $$f"; (cd $$(dirname $$f) && $(CURDIR)/$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=900 $$(basename $$f) >/dev/null) || exit 1; done
	$(BIN)/nbdev-clean
