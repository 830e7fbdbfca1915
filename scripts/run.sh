#!/usr/bin/env bash
# The main job: build longattn for the hardware present and run the default benchmark
# (`longattn bench`: the GPU backends when a GPU is present, the cpu backend otherwise), writing
# the results to runs/<timestamp>/. Run scripts/setup.sh first on a fresh machine.
#
# Usage: scripts/run.sh [extra `longattn bench` flags]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

cuda=OFF
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then cuda=ON; fi
build=build/release
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGATTN_CUDA=$cuda -DLONGATTN_TESTS=OFF \
  -DLONGATTN_BENCHMARKS=OFF >/dev/null
ninja -C "$build" longattn

out=runs/$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$out"
echo "run.sh: CUDA $cuda; results in $out/"
"$build/apps/longattn" bench --out "$out" "$@" 2>&1 | tee "$out/bench.log"
