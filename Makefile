# Two commands do everything on a fresh machine: `make run` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bootstrapped

.PHONY: run test setup lint bench sample-clip clean

$(STAMP): pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh

setup: $(STAMP)

## Upscale the bundled sample clip with the bundled model: out/sample_x4.mp4 + out/sample_compare.png
run: $(STAMP)
	MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 $(VENV)/bin/vsr demo -o out

## Lint, type-check and run the whole test suite
test: $(STAMP)
	$(VENV)/bin/ruff check vsr_desktop tests benchmarks tools
	$(VENV)/bin/mypy
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check vsr_desktop tests benchmarks tools
	$(VENV)/bin/ruff format --check vsr_desktop tests benchmarks tools
	$(VENV)/bin/mypy

## Throughput benchmark (reference vs engine vs pipeline); figures go to docs/benchmarks.md
bench: $(STAMP)
	$(PY) -m benchmarks.throughput

sample-clip: $(STAMP)
	$(PY) tools/make_sample_clip.py

clean:
	rm -rf out bench-out .pytest_cache .mypy_cache .ruff_cache
