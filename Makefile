# Shortcuts for the commands in README.md. The venv's bin comes first on PATH, so the `python` that
# dvc.yaml's stage commands call is the venv's even when it is not activated.
export PATH := $(CURDIR)/.venv/bin:$(PATH)
.PHONY: install run demo test test-all test-vllm lint bench

install:  ## a virtualenv with the CPU build of torch and tuneops
	python3 -m venv .venv
	.venv/bin/pip install torch==2.13.0
	.venv/bin/pip install -e ".[dev]"

run:  ## the whole pipeline, DVC deciding what reruns
	.venv/bin/dvc repro

demo:  ## the whole pipeline offline on the sample tuneops makes, to a champion and a prediction
	.venv/bin/tuneops demo

test:  ## the fast layer (under 8 min on 2 cores): every unit test, one end-to-end `dvc repro`, one API round trip
	.venv/bin/python -m pytest -m "not slow or smoke"

test-all:  ## the whole suite: DVC, Prefect, training and serving end to end (tests/shared/ too when ../shared is there)
	.venv/bin/python -m pytest -n 2 --dist loadfile --durations=20  # two workers, a test file each at a time

test-vllm:  ## serve.engine: vllm against a real vLLM (CPU build, its own virtualenv made on first use; ~10 min)
	.venv/bin/python -m pytest -m vllm tests/api/test_vllm_engine.py --durations=10

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

bench:
	.venv/bin/python bench/data_speed.py
