#!/usr/bin/env bash
# Installs what longattn needs on a fresh Debian machine (run as root, or with sudo available).
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
pkgs=(cmake ninja-build g++ libcli11-dev nlohmann-json3-dev libfmt-dev libgtest-dev googletest
      libopenmpi-dev openmpi-bin libpng-dev libbenchmark-dev python3-pip chromium)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# cuDNN frontend headers for the cudnn backend (header-only; libcudnn comes with CUDA).
# Debian's own python3 is "externally managed": pip then needs --break-system-packages.
if ! python3 -c 'import importlib.metadata as m; m.distribution("nvidia-cudnn-frontend")' 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check nvidia-cudnn-frontend 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages nvidia-cudnn-frontend
fi
# numpy and pytest for the peer bridge's CPU tests (python/tests).
if ! python3 -c 'import numpy, pytest' 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check numpy pytest 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages numpy pytest
fi
echo "setup: dependencies present"
