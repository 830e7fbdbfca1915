#!/usr/bin/env bash
# Device-machine check of the flash kernels: build (sm_90a only, flash alone), GPU tests, the
# CUDA-event timer at the headline shape and PyTorch SDPA (FlashAttention-2) beside it.
#   tests/gpu/flash_device_run.sh [gtest filter|none] [timer args...]
# Environment: SANITIZE=1 (memcheck, racecheck on a small case), PEER=0 (skip SDPA),
#   VARIANTS="name:-DMACRO=1 -DOTHER=2;name2:..." (extra builds of the kernels, timed on
#   VARIANT_ARGS), NCU="kernel-regex timer-args" (Nsight Compute metrics of one launch),
#   HPC_SWEEP="1 2 4" with HPC_ARGS (forward timings at fixed heads per CTA), SASS=1,
#   BENCH="longattn bench arguments" (also builds the CLI), TIMING=0 (skip the timer).
set -uo pipefail
OUT=${OUT:-/tmp/flash_out}
mkdir -p "$OUT"
B=build-dev
CUDA=${CUDA_HOME:-/usr/local/cuda}
filter=${1:-*}
shift || true
cmake -S . -B $B -G Ninja -DCMAKE_CUDA_ARCHITECTURES=90a -DLONGATTN_SKIP_BACKENDS="cudnn;naive" \
  -DLONGATTN_TESTS=OFF -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON \
  -DCMAKE_CUDA20_STANDARD_COMPILE_OPTION=-std=c++20 \
  -DCMAKE_CUDA20_EXTENSION_COMPILE_OPTION=-std=c++20 >"$OUT/build.log" 2>&1 ||
  { tail -30 "$OUT/build.log"; exit 1; }
cmake -S .deps/googletest -B $B-gtest -G Ninja -DBUILD_GMOCK=OFF -DINSTALL_GTEST=OFF >>"$OUT/build.log" 2>&1 &&
  ninja -C $B-gtest -j16 >>"$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
ninja -C $B -j16 longattn_kernels longattn_core >>"$OUT/build.log" 2>&1 ||
  { grep -B2 -A8 -E 'error|FAILED' "$OUT/build.log" | head -60; exit 1; }
gtest_libs="$(find $B-gtest -name libgtest_main.a) $(find $B-gtest -name libgtest.a)"
libs="$B/src/kernels/liblongattn_kernels.a $B/src/kernels/liblongattn_flash_prep.a $B/src/liblongattn_core.a"
g++ -std=c++20 -O2 -Iinclude -Isrc/kernels -I.deps/include -I.deps/googletest/googletest/include \
  -I$CUDA/include tests/gpu/test_flash.cpp tests/gpu/test_flash_block_transpose.cpp tests/gpu/test_flash_sparse.cpp \
  -o $B/test_flash $libs $gtest_libs -L$CUDA/lib64 -lcudart -lpthread \
  >>"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
nvcc -std=c++20 -O2 -gencode arch=compute_90a,code=sm_90a -Iinclude -I.deps/include \
  tests/gpu/flash_timing.cu -o $B/flash_timing $libs >>"$OUT/build.log" 2>&1 ||
  { tail -40 "$OUT/build.log"; exit 1; }
echo "== build ok"
if [ "${SASS:-0}" = 1 ]; then
  for f in fwd_hdim128_bf16 bwd_hdim128_bf16; do
    o=$(find $B -name "$f.cu.o" | head -1)
    cuobjdump -sass "$o" 2>&1 | gzip -c >"$OUT/$f.sass.gz"
  done
fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
if [ "$filter" != "none" ]; then
  t0=$(date +%s)
  timeout ${TEST_TIMEOUT:-300} $B/test_flash --gtest_filter="$filter" --gtest_brief=1 >"$OUT/test.log" 2>&1
  rc=$?
  grep -E '^\[  FAILED|Failure|error|: \|\|x|LSE' "$OUT/test.log" | head -40
  tail -3 "$OUT/test.log"
  echo "== tests rc=$rc in $(( $(date +%s) - t0 )) s"
fi
if [ "${SANITIZE:-0}" = 1 ]; then
  f='*FlashPatterns.MatchesReference/causal_document_S77_D128_bf16_H6x2:*MatchesReference/shared_question_S1000_D64_bf16_H6x2:FlashEdges.EmptyRows*'
  compute-sanitizer --tool memcheck --print-limit 5 $B/test_flash --gtest_filter="$f" --gtest_brief=1 \
    >"$OUT/sanitize.log" 2>&1; echo "== memcheck rc=$? $(grep -E 'ERROR SUMMARY' "$OUT/sanitize.log" | tail -1)"
  compute-sanitizer --tool racecheck --print-limit 5 $B/test_flash --gtest_filter="$f" --gtest_brief=1 \
    >"$OUT/race.tmp" 2>&1; echo "== racecheck rc=$? $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/race.tmp" | tail -1)"
  cat "$OUT/race.tmp" >>"$OUT/sanitize.log"; rm -f "$OUT/race.tmp"
fi
if [ -n "${BENCH:-}" ]; then
  # The benchmark's own numbers (its timing protocol, correctness check on sampled rows).
  ninja -C $B -j16 longattn >>"$OUT/build.log" 2>&1 && mkdir -p "$OUT/bench" &&
    timeout ${BENCH_TIMEOUT:-300} $B/apps/longattn bench $BENCH --out "$OUT/bench" 2>&1 |
    grep -v '^\[' | tail -40
  rc=$?
  echo "== bench rc=$rc"
  [ -s "$OUT/bench/results.csv" ] || TIMING=1
fi
if [ "${PEER:-1}" = 1 ]; then
  PYTHONUNBUFFERED=1 python3 tests/gpu/flash_sdpa_peer.py 16384 64 8 128 10 2>&1 | tee "$OUT/sdpa.log" | tail -4
fi
[ "${TIMING:-1}" = 1 ] && timeout ${TIMING_TIMEOUT:-200} $B/flash_timing "$@" 2>&1 | tee "$OUT/timing.log"
for hpc in ${HPC_SWEEP:-}; do
  echo "== forward, heads per CTA $hpc"
  FLASH_FWD_ONLY=1 FLASH_HPC=$hpc timeout 100 $B/flash_timing $HPC_ARGS 2>&1 | grep -v '^#' |
    cut -c1-55 | tee -a "$OUT/hpc.log"
done
IFS=';' read -ra variants <<<"${VARIANTS:-}"
for v in "${variants[@]}"; do
  name=${v%%:*}
  flags=${v#*:}
  cmake -S . -B $B-$name -G Ninja -DCMAKE_CUDA_ARCHITECTURES=90a -DLONGATTN_SKIP_BACKENDS="cudnn;naive" \
    -DLONGATTN_TESTS=OFF -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON -DCMAKE_CUDA_FLAGS="$flags" \
    -DCMAKE_CUDA20_STANDARD_COMPILE_OPTION=-std=c++20 \
    -DCMAKE_CUDA20_EXTENSION_COMPILE_OPTION=-std=c++20 >>"$OUT/build.log" 2>&1 &&
    ninja -C $B-$name -j16 longattn_kernels >>"$OUT/build.log" 2>&1 &&
    nvcc -std=c++20 -O2 -gencode arch=compute_90a,code=sm_90a -Iinclude -I.deps/include \
      tests/gpu/flash_timing.cu -o $B-$name/flash_timing $B-$name/src/kernels/liblongattn_kernels.a \
      $B/src/liblongattn_core.a >>"$OUT/build.log" 2>&1 || { echo "variant $name failed"; continue; }
  echo "== variant $name: $flags"
  timeout 120 $B-$name/flash_timing ${VARIANT_ARGS:-16384 64 8 128 bf16 10 full causal} 2>&1 |
    tee "$OUT/timing_$name.log" | grep -v '^#'
done
if [ -n "${NCU:-}" ]; then
  read -r kre nargs <<<"$NCU"
  m=smsp__average_warps_issue_stalled
  metrics="sm__throughput.avg.pct_of_peak_sustained_elapsed,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active,smsp__issue_active.avg.pct_of_peak_sustained_active,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_sectors_op_red.sum,smsp__inst_executed.sum,gpu__time_duration.sum"
  for st in barrier long_scoreboard short_scoreboard mio_throttle math_pipe_throttle wait not_selected selected lg_throttle dispatch_stall no_instruction; do
    metrics="$metrics,${m}_${st}_per_issue_active.ratio"
  done
  timeout 200 ncu --kernel-name regex:"$kre" --launch-count 1 --metrics "$metrics" $B/flash_timing $nargs \
    >"$OUT/ncu.log" 2>&1
  echo "== ncu rc=$?"; grep -E '^\s+(sm__|smsp__|l1tex|dram|lts|gpu__)|flash_' "$OUT/ncu.log" | head -40
fi
