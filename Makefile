# Two commands do everything on a fresh machine: `make run` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bootstrapped

.PHONY: run test setup lint bench bench-gui screenshots sample-clip clean installer

$(STAMP): pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh

setup: $(STAMP)

## With a display: open the app on the bundled sample. Headless: upscale the sample with the
## bundled model into out/sample_x4.mp4 and write out/sample_compare.png.
run: $(STAMP)
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then $(VENV)/bin/vsr-desktop; \
	else $(VENV)/bin/vsr demo -o out; fi

## Lint, check the layering contracts, type-check and run the whole test suite
test: $(STAMP)
	$(VENV)/bin/ruff check vsr_desktop tests benchmarks tools
	$(VENV)/bin/ruff format --check vsr_desktop tests benchmarks tools
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check vsr_desktop tests benchmarks tools
	$(VENV)/bin/ruff format --check vsr_desktop tests benchmarks tools
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

## Throughput benchmark (reference vs engine vs pipeline); figures go to docs/benchmarks.md
bench: $(STAMP)
	$(PY) -m benchmarks.throughput

## Event-loop latency while previews and jobs run, and window start-up time
bench-gui: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m benchmarks.gui_latency

## The real app under Xvfb: PNGs of the main states into docs/screenshots/
screenshots: $(STAMP)
	QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) tools/screenshots.py

sample-clip: $(STAMP)
	$(PY) tools/make_sample_clip.py

## Linux installers from a PyInstaller bundle (CPU torch): dist/*.deb and dist/*.tar.gz.
## Smoke-test the .deb in a clean Debian root: sudo packaging/linux/smoke_in_clean_root.sh
installer:
	bash packaging/linux/build_installer.sh

clean:
	rm -rf out bench-out .pytest_cache .mypy_cache .ruff_cache
