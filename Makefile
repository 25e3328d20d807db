# Two commands do everything on a fresh machine: `make run` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.bootstrapped

.PHONY: run test test-container setup lint bench bench-gui screenshots sample-clip clean installer installer-check

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

## The worker image built and run in real Docker containers (root; apt for docker.io and
## debootstrap): split/upscale/merge and serve against the moto server, and the Step
## Functions -> Batch -> container chain. Builds or reuses the image, runs the tests, stops
## the private dockerd (images stay in /var/tmp/vsr-docker; `build_test_image.sh clean`).
test-container: $(STAMP)
	bash packaging/docker/build_test_image.sh build
	VSR_CONTAINER_TESTS=1 $(PY) -m pytest -m container tests/integration/test_worker_container.py; \
	rc=$$?; bash packaging/docker/build_test_image.sh stop; exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check vsr_desktop tests benchmarks tools
	$(VENV)/bin/ruff format --check vsr_desktop tests benchmarks tools
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

## Throughput benchmark (reference vs engine vs pipeline); figures go to docs/benchmarks.md
bench: $(STAMP)
	$(PY) -m benchmarks.throughput

## Playback: GUI-thread lateness while the preview plays 5 s, and window start-up time
## (the longer scrub/job phases: python -m benchmarks.gui_latency)
bench-gui: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m benchmarks.bench_gui

## The real app under Xvfb: PNGs of the main states into docs/screenshots/, light and dark,
## on a 1366×768 screen at 100 % and a 1920×1080 screen at 200 %
SHOT_100 := QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1366x768x24" $(PY) tools/screenshots.py
SHOT_200 := QT_QPA_PLATFORM=xcb QT_SCALE_FACTOR=2 xvfb-run -a -s "-screen 0 1920x1080x24" \
	$(PY) tools/screenshots.py --shots wipe
screenshots: $(STAMP)
	$(SHOT_100) --theme light
	$(SHOT_100) --theme dark --prefix dark_ --shots wipe,jobs,dialogs
	$(SHOT_200) --theme light --prefix hidpi_
	$(SHOT_200) --theme dark --prefix hidpi_dark_

sample-clip: $(STAMP)
	$(PY) tools/make_sample_clip.py

## Linux installers from a PyInstaller bundle (CPU torch): dist/*.deb and dist/*.tar.gz.
## Smoke-test the .deb in a clean Debian root: sudo packaging/linux/smoke_in_clean_root.sh
installer:
	bash packaging/linux/build_installer.sh

## The .deb installed in a clean Debian container (root, Docker): vsr --version, vsr demo,
## vsr-desktop --smoke, purge, nothing left. Report in build/installer-check.txt. Needs a
## built .deb (make installer: ~15 min on 2 cores); the check itself takes ~3-5 min.
installer-check:
	bash packaging/linux/installer_check.sh

clean:
	rm -rf out bench-out .pytest_cache .mypy_cache .ruff_cache
