# cosmos-nb: the two commands a newcomer needs (see README.md)
#   make demo        set up this machine and run the main job (the CPU demo)
#   make test        set up this machine and run every test (what CI runs)
#   make test-slow   the long CPU checks (`pytest -m slow`), not part of CI
SHELL := /bin/bash
VENV  ?= .venv
BIN   := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export PYTHONUNBUFFERED := 1

# torch first, with a pin that matches the machine: a bare `torch` range pulls a multi-GB CUDA build on a CPU box.
# The pins (torchcodec must match torch's build) and the ways to get FFmpeg live in one file that cosmos_nb.video reads too.
include cosmos_nb/assets/install/install.mk
ifeq ($(shell command -v nvidia-smi >/dev/null 2>&1 && echo gpu),gpu)
TORCH_SPEC      ?= $(GPU_TORCH)
TORCHCODEC_SPEC ?= $(GPU_TORCHCODEC)
else
TORCH_SPEC      ?= $(CPU_TORCH)
TORCHCODEC_SPEC ?= $(CPU_TORCHCODEC)
endif

.PHONY: demo test test-slow install install-test system-deps system-deps-test check-sync nbtest pytest slurm-up clean run-nbs

demo: install
	$(BIN)/cosmos-nb demo

test: install-test check-sync nbtest pytest

test-slow: install
	$(BIN)/python -m pytest tests -m slow

# System packages. The demo needs FFmpeg's shared libraries (torchcodec decodes and encodes with them); the tests also need
# Chromium (the docs test renders the site in a headless browser), so only `make test` asks for it.
# Missing ones are installed with apt-get as root or where sudo needs no password (`sudo -n true`). Otherwise we say what is
# missing and how to get it, and stop: a sudo password prompt inside make hangs a batch job and looks like a stuck build.
HOW_ffmpeg   := FFmpeg, whose shared libraries torchcodec loads (versions 4 to 8). Any one of: $(FFMPEG_FIXES)
HOW_chromium := Chromium, for the docs browser test only (make demo does not need it): sudo apt-get install chromium (Debian) or chromium-browser (Ubuntu)
ALT_chromium := chromium-browser
RPAREN := )
# $(call system_pkgs,apt packages): each is found on PATH under its own name or its ALT_ name
define system_pkgs
@missing=""; $(foreach p,$(1),command -v $(p) >/dev/null 2>&1 $(foreach a,$(ALT_$(p)),|| command -v $(a) >/dev/null 2>&1 )|| missing="$$missing $(p)"; )\
if [ -z "$$missing" ]; then exit 0; fi; \
if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true >/dev/null 2>&1; then SUDO="sudo -n"; else SUDO=no; fi; \
if [ "$$SUDO" = no ] || ! command -v apt-get >/dev/null 2>&1; then \
  why=$$( [ "$$SUDO" = no ] && echo "installing it needs root and sudo asks for a password" || echo "apt-get is not available here" ); \
  echo "missing:$$missing (not on PATH); $$why, so make does not install it. Install it, then run make again:" >&2; \
  for p in $$missing; do case $$p in $(foreach p,$(1),$(p)$(RPAREN) echo "  $(HOW_$(p))" >&2;; )esac; done; \
  exit 1; fi; \
echo "installing:$$missing (apt-get)"; \
$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null
endef

system-deps:
	$(call system_pkgs,ffmpeg)

system-deps-test:
	$(call system_pkgs,ffmpeg chromium)

$(BIN)/python:
	python3 -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(BIN)/pip install -q --disable-pip-version-check -e ".[dev]" "$(TORCHCODEC_SPEC)"
	touch $@

install: system-deps $(VENV)/.installed

install-test: system-deps-test $(VENV)/.installed

# CI fails when cosmos_nb/ is out of sync with nbs/ or notebooks are not clean
check-sync:
	$(BIN)/nbdev-export
	@git diff --exit-code --stat -- cosmos_nb || { echo "cosmos_nb/ is out of sync with nbs/: run nbdev-export and commit"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- cosmos_nb)" || { git status --short -- cosmos_nb; echo "nbdev-export wrote files that are not committed"; exit 1; }
	$(BIN)/nbdev-clean
	@git diff --exit-code --stat -- nbs || { echo "notebooks are not clean: run nbdev-clean and commit"; exit 1; }

nbtest:
	$(BIN)/nbdev-test --n-workers 2

# a real single-node SLURM (with accounting) for the submitit tests; the test fixture also starts it if needed.
# It needs root: without root or passwordless sudo the SLURM tests skip themselves (never a password prompt here).
slurm-up:
	@if [ "$$(id -u)" = 0 ]; then bash slurm/ci/up.sh; elif sudo -n true >/dev/null 2>&1; then sudo -n bash slurm/ci/up.sh; \
	else echo "slurm-up: the loopback SLURM cluster needs root (sudo asks for a password): the real-SLURM tests will skip; run sudo bash slurm/ci/up.sh first to include them"; fi

pytest: slurm-up
	$(BIN)/python -m pytest tests

clean:
	rm -rf _proc _docs outputs/demo

# Developers: execute notebooks in place (so the docs show their outputs), then strip metadata. NB=nbs/00_video.ipynb for one.
# nbclient stores widget state unless told not to; tests/test_notebooks_weight.py then drops widget views and keeps one format per figure.
NB ?= $(wildcard nbs/*.ipynb)
run-nbs: install
	@for f in $(NB); do echo "executing $$f"; (cd $$(dirname $$f) && $(CURDIR)/$(BIN)/jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=900 --ExecutePreprocessor.store_widget_state=False $$(basename $$f) >/dev/null && $(CURDIR)/$(BIN)/python $(CURDIR)/tests/test_notebooks_weight.py $$(basename $$f)) || exit 1; done
	$(BIN)/nbdev-clean
