#!/usr/bin/env bash
# Device-machine check of the sm_90a kernels (flash_hopper): build (sm_90a only, flash and
# flash_hopper alone), its GPU tests, optionally compute-sanitizer, and the benchmark's numbers
# beside the portable flash kernel.
#   tests/gpu/flash_hopper_device_run.sh [gtest filter|none]
# Environment: SANITIZE=1 (memcheck + synccheck on small cases), BENCH=0 (skip the benchmark),
#   BENCH_ARGS (default: --seqlen 16K --heads 64:8 --mask full,causal,causal_document,
#   sliding_window), DIRECTION (default fwd; fwdbwd for the backward too), SAN_FILTER (the
#   sanitizers' gtest filter), TEST_TIMEOUT (s, default 420).
# Needs .deps (scripts/make_deps.sh, carried): googletest, fmt/CLI11/json, cutlass/include.
set -uo pipefail
OUT=${OUT:-/tmp/flash_hopper_out}
mkdir -p "$OUT"
B=build-hopper
CUDA=${CUDA_HOME:-/usr/local/cuda}
filter=${1:-*}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv,noheader
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGATTN_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90a -DLONGATTN_SKIP_BACKENDS="cudnn;naive" \
  -DLONGATTN_TESTS=OFF -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON \
  -DLONGATTN_CUTLASS_INCLUDE="$PWD/.deps/cutlass/include" \
  -DCMAKE_CUDA20_STANDARD_COMPILE_OPTION=-std=c++20 \
  -DCMAKE_CUDA20_EXTENSION_COMPILE_OPTION=-std=c++20 >"$OUT/build.log" 2>&1 ||
  { tail -30 "$OUT/build.log"; exit 1; }
grep -E "flash_hopper" "$OUT/build.log"
cmake -S .deps/googletest -B $B-gtest -G Ninja -DBUILD_GMOCK=OFF -DINSTALL_GTEST=OFF >>"$OUT/build.log" 2>&1 &&
  ninja -C $B-gtest -j16 >>"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
t0=$(date +%s)
ninja -C $B -j16 longattn_kernels longattn_core longattn_bench >>"$OUT/build.log" 2>&1 ||
  { grep -B2 -A12 -E 'error|FAILED' "$OUT/build.log" | head -80; exit 1; }
gtest_libs="$(find $B-gtest -name libgtest_main.a) $(find $B-gtest -name libgtest.a)"
libs="$B/src/bench/liblongattn_bench.a $B/src/kernels/liblongattn_kernels.a $B/src/kernels/liblongattn_flash_prep.a $B/src/liblongattn_core.a"
g++ -std=c++20 -O2 -DLONGATTN_WITH_FLASH -DLONGATTN_WITH_FLASH_HOPPER -DFMT_HEADER_ONLY=1 \
  -Iinclude -Isrc/kernels -I.deps/include -I.deps/googletest/googletest/include -I$CUDA/include \
  tests/gpu/test_flash_hopper.cpp -o $B/test_flash_hopper $libs $gtest_libs -L$CUDA/lib64 \
  -lcudart -lcublas -lpthread -ldl >>"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "== build ok in $(( $(date +%s) - t0 )) s"
if [ "$filter" != "none" ]; then
  t0=$(date +%s)
  timeout ${TEST_TIMEOUT:-420} $B/test_flash_hopper --gtest_filter="$filter" --gtest_brief=1 \
    >"$OUT/test.log" 2>&1
  rc=$?
  grep -E '^\[  FAILED|Failure|error|: \|\|x|LSE' "$OUT/test.log" | head -40
  tail -3 "$OUT/test.log"
  echo "== tests rc=$rc in $(( $(date +%s) - t0 )) s"
fi
if [ "${SANITIZE:-0}" = 1 ]; then
  f=${SAN_FILTER:-'*causal_document_S77_bf16_H6x2:*shared_question_S1000_bf16_H6x2:FlashHopperEdges.EmptyRows*:FlashHopperBackwardEdges.EmptyRows*'}
  for tool in memcheck synccheck; do
    timeout 300 compute-sanitizer --tool $tool --print-limit 5 $B/test_flash_hopper \
      --gtest_filter="$f" --gtest_brief=1 >"$OUT/$tool.log" 2>&1
    echo "== $tool rc=$? $(grep -E 'ERROR SUMMARY' "$OUT/$tool.log" | tail -1)"
  done
fi
if [ "${BENCH:-1}" = 1 ]; then
  # The benchmark's own protocol and sampled-row correctness check, flash_hopper beside flash.
  ninja -C $B -j16 longattn >>"$OUT/build.log" 2>&1 && mkdir -p "$OUT/bench" &&
    timeout ${BENCH_TIMEOUT:-240} $B/apps/longattn bench --backend flash_hopper,flash \
      ${BENCH_ARGS:---seqlen 16K --heads 64:8 --mask full,causal,causal_document,sliding_window} \
      --head-dim 128 --dtype bf16 --direction ${DIRECTION:-fwd} --check-rows 16 --time-budget 0.2 \
      --out "$OUT/bench" 2>&1 | grep -v '^\[' | tail -30
  echo "== bench rc=$?"
fi
