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
# CUTLASS / CuTe headers (flash_hopper, sm_90a): the nvidia-cutlass wheel's
# cutlass_library/source/include.
whl=$(mktemp -d)
python3 -m pip download --no-deps --only-binary=:all: -d "$whl" "nvidia-cutlass==4.2.*" >/dev/null
mkdir -p "$deps/cutlass"
python3 - "$whl" "$deps/cutlass" <<'PY'
import glob, sys, zipfile
src = glob.glob(sys.argv[1] + "/nvidia_cutlass-*.whl")[0]
prefix = "cutlass_library/source/include/"
with zipfile.ZipFile(src) as z:
    for n in z.namelist():
        if n.startswith(prefix) and not n.endswith("/"):
            z.extract(n, sys.argv[2] + "/_x")
PY
mv "$deps/cutlass/_x/cutlass_library/source/include" "$deps/cutlass/include"
rm -rf "$deps/cutlass/_x" "$whl"
du -sh "$deps"
