#!/usr/bin/env bash
# Copies the header-only dependencies, GoogleTest's source and the cuDNN frontend headers into
# .deps/ (git-ignored) so that the GPU machine, which has no package registry, can build.
# Run scripts/setup.sh first. Usage: scripts/make_deps.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
deps=$root/.deps
rm -rf "$deps" && mkdir -p "$deps/include"
cp -r /usr/include/CLI /usr/include/nlohmann /usr/include/fmt "$deps/include/"
cp -r /usr/src/googletest "$deps/googletest"
inc=$(python3 "$root/scripts/cudnn_frontend_include.py")
mkdir -p "$deps/cudnn_frontend" && cp -r "$inc" "$deps/cudnn_frontend/include"
du -sh "$deps"
