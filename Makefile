# One-command set-up for a fresh machine (Debian, Python 3.11, no GPU needed).
#   make demo   -> installs everything into .venv and runs `tokdyn demo` on the embedded default
#   make test   -> installs everything (incl. the Debian RTSP server packages) and runs the test suite
#   make test-fast -> the inner loop: no Ray cluster, no browser, no RTSP server, nothing marked slow; one pytest
#                     worker per core (pytest-xdist), each taking whole test files so module fixtures are built once
#   make model  -> the shipped model (vlm/weights/scenes-tiny) trained from nothing: four `tokdyn train` runs
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU wheel of torch this machine carries; install it before the project so that pip never
# resolves `torch` to a multi-GB CUDA build from the registry.
TORCH  ?= torch==2.13.0
PYTEST_ARGS ?=
GPU_JSON ?= out/gpu.json

APT_PACKAGES := gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-libav \
	chromium chromium-driver

.PHONY: setup apt demo test test-fast bench model gpu clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# Debian's gst-rtsp-server runs the loopback RTSP camera used by the RTSP tests and demos; Debian's
# chromium + chromium-driver run the web console tests (selenium drives them headless).
apt:
	@if /usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' 2>/dev/null \
			&& command -v chromedriver >/dev/null; then \
		echo "RTSP server and browser packages present"; \
	else \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	fi

demo: setup
	$(BIN)/tokdyn demo

test: setup apt
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest -q -n auto --dist loadfile -m "not ray and not browser and not rtsp and not slow and not gpu" \
		$(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/compressor.py --quick --json out/bench-compressor.json
	$(BIN)/python bench/ingest.py --quick --json out/bench-ingest.json
	$(BIN)/python bench/transport.py --quick --json out/bench-transport.json
	$(BIN)/python bench/pipeline.py --quick --json out/bench-pipeline.json
	$(BIN)/python bench/query.py --quick --json out/bench-query.json
	$(BIN)/python bench/qa.py --quick --json out/bench-qa.json
	$(BIN)/python bench/reader.py --quick --json out/bench-reader.json
	$(BIN)/python bench/scale.py --quick --json out/bench-scale.json

# The shipped model from nothing, about 3.5 hours on 2 cores (each run resumes after a kill): the first run teaches
# vision and reading (fixed-K memories); the second continues it on adaptive memories; the third and fourth on
# 384 fresh scenes each (the fourth for 4,000 steps). Then copy out/train-adaptive-3/model into
# vlm/weights/scenes-tiny.
model: setup
	$(BIN)/tokdyn train -c configs/train-default.yaml
	$(BIN)/tokdyn train -c configs/train-adaptive.yaml
	$(BIN)/tokdyn train -c configs/train-adaptive.yaml --output out/train-adaptive-2 \
		--set model.init=out/train-adaptive/model --set data.scenes.first_seed=101000 --set seed=2
	$(BIN)/tokdyn train -c configs/train-adaptive.yaml --output out/train-adaptive-3 \
		--set model.init=out/train-adaptive-2/model --set data.scenes.first_seed=102000 --set seed=3 --set steps=4000

# On a GPU machine (docs/gpu.md), with its own Python (torch, transformers, numpy, msgpack; no venv, no network):
# the real-size check in under 8 minutes -> out/gpu.json. Wheels carried in out/wheels (pytest, hypothesis) are
# unpacked onto PYTHONPATH first, so the CUDA tests run too.
gpu:
	@for w in out/wheels/*.whl; do [ -f "$$w" ] && $(PYTHON) -m zipfile -e "$$w" out/site; done; true
	PYTHONPATH=$(CURDIR)/out/site$${PYTHONPATH:+:$$PYTHONPATH} $(PYTHON) bench/gpu.py --json $(GPU_JSON)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
