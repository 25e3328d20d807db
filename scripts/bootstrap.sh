#!/usr/bin/env bash
# Set up everything `make run` and `make test` need on a fresh Debian/Ubuntu machine:
# system packages (when run as root), the .venv at the repo root, and the Python packages.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PY=${PYTHON:-python3}
# Qt offscreen (tests) and a real window under Xvfb (screenshots); imagemagick for captures;
# openssh for the Slurm-over-SSH tests (a private sshd on 127.0.0.1, see tests/helpers/ssh_fixture.py);
# ffmpeg makes "another tool's" files for the footage tests (trimmed, mid-GOP, edit lists);
# nsis and desktop-file-utils so the packaging tests compile the Windows installer script and
# validate the Linux .desktop file instead of skipping.
APT_PACKAGES=(ca-certificates libegl1 libgl1 libx11-6 libdbus-1-3 libfontconfig1 libfreetype6
    libglib2.0-0 libxkbcommon0 xvfb xauth libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4
    libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-shape0 libxcb-xkb1 imagemagick
    openssh-server openssh-client nsis desktop-file-utils ffmpeg)

if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if (( ${#missing[@]} )); then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
fi

# A real one-node Slurm for the Slurm backend's tests (slurm-wlm + munge).
bash scripts/slurm/install.sh

if [[ ! -x $VENV/bin/python ]]; then
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
fi
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)

# PyTorch first, pinned: on Linux x86_64 these are the CUDA builds (they also run on CPU).
# Users on macOS get the MPS build and CPU-only users may use the CPU index: see README.
if [[ $(uname -s) == Linux && $(uname -m) == x86_64 ]]; then
    "${PIP[@]}" torch==2.14.1 torchvision==0.29.1
fi
"${PIP[@]}" -e ".[gui,aws,dev,bench]"
# The benchmark's reference implementation: unmaintained, with a 1.9 GB dependency tree we
# do not need; its few real dependencies are in the bench extra above.
"${PIP[@]}" --no-deps realesrgan==0.3.0 basicsr==1.4.2
touch "$VENV/.bootstrapped"
