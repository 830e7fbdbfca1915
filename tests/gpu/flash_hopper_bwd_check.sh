#!/usr/bin/env bash
# One time-boxed device call for the flash_hopper backward: build (sm_90a, cuDNN on), GPU tests,
# an Nsight Compute profile of the backward kernel, the benchmark beside cuDNN, sanitizers.
#   STAGES="build test sanitize bench ncu" tests/gpu/flash_hopper_bwd_check.sh
# Stages run in the order given, each only while BUDGET seconds (default 280) are not spent:
#   build     configure + ninja longattn longattn_gpu_tests into $B (default /tmp/hb, kept on a warm
#             machine; keep it outside a carried folder, which is replaced at every call)
#   base      also build BASE_SRC's (default: none) longattn into $B-base, for side-by-side timings
#             and profiles of an older tree (LONGATTN_SKIP_BACKENDS=cudnn;naive there); or name
#             an existing binary with BASE_BIN
#   test      TEST_FILTER (default: every flash_hopper backward test and the backend's own)
#   testall   every flash_hopper test (forward too)
#   ncu       ncu on one backward launch (NCU_ARGS: default full mask, 8K, GQA 64:8; at most
#             NCU_TIMEOUT seconds, default 60, per profile), sections
#             SpeedOfLight, ComputeWorkloadAnalysis, MemoryWorkloadAnalysis, WarpStateStats,
#             SchedulerStats; of the base tree too when it was built
#   bench     longattn bench --backend $BENCH_BACKENDS (flash_hopper,cudnn) $BENCH_ARGS fwdbwd,
#             records into $OUT/bench (and $BENCH_ARGS2 into $OUT/bench2); the base binary's
#             flash_hopper backward on BENCH_ARGS into $OUT/bench_base
#   variants  for each VARIANTS value (default 1 2 3) of LONGATTN_HOPPER_BWD_FLAGS: VARIANT_FILTER tests,
#             the backward's benchmark on BENCH_ARGS into $OUT/bench_flagsF
#   sanitize  compute-sanitizer memcheck, racecheck, synccheck on small backward cases
# Logs go to a work folder (W, default /tmp/hbw), packed into $OUT/logs.tgz after every stage (the
# device tool returns at most 8 files). Needs .deps (googletest, fmt/CLI11/json, cudnn_frontend, cutlass/include).
set -uo pipefail
RET=${OUT:-/tmp/flash_hopper_bwd_out}
OUT=${W:-/tmp/hbw}
rm -rf "$OUT"
mkdir -p "$OUT" "$RET"
pack() { tar czf "$RET/logs.tgz" -C "$OUT" .; }
trap pack EXIT
export PATH=/usr/local/cuda/bin:$PATH
B=${B:-/tmp/hb}
bin=$B/apps/longattn
t0=$(date +%s)
left() { echo $(( ${BUDGET:-280} - ($(date +%s) - t0) )); }
stages=" ${STAGES:-build test bench} "
has() { [[ "$stages" == *" $1 "* ]]; }
cfg=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGATTN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a
     -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON -DLONGATTN_BENCHMARKS=OFF)
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv,noheader

stage_build() {
  base_pid=""
  if has base && [ -n "${BASE_SRC:-}" ]; then
    (cmake -S "$BASE_SRC" -B $B-base "${cfg[@]}" -DLONGATTN_TESTS=OFF \
       -DLONGATTN_SKIP_BACKENDS="cudnn;naive" >"$OUT/build_base.log" 2>&1 &&
     ninja -C $B-base -j16 longattn >>"$OUT/build_base.log" 2>&1) &
    base_pid=$!
  fi
  cmake -S . -B $B "${cfg[@]}" >"$OUT/build.log" 2>&1 &&
    ninja -C $B -j16 longattn longattn_gpu_tests >>"$OUT/build.log" 2>&1 ||
    { grep -B2 -A12 -E 'error|FAILED' "$OUT/build.log" | head -60; exit 1; }
  grep -E "cudnn backend|flash_hopper backend" "$OUT/build.log"
  if [ -n "$base_pid" ]; then
    wait $base_pid || { tail -20 "$OUT/build_base.log"; }
  fi
  echo "== build done at $(( $(date +%s) - t0 )) s"
  pack
}
bin=$B/apps/longattn
# The older tree's binary: built by the base stage, or BASE_BIN (e.g. a build left on the machine).
find_base() {
  base_bin=${BASE_BIN:-$B-base/apps/longattn}
  [ -x "$base_bin" ] || base_bin=""
}

run_tests() {
  timeout $(( $(left) > 20 ? $(left) - 10 : 10 )) $B/tests/gpu/longattn_gpu_tests \
    --gtest_filter="$1" --gtest_brief=1 >"$OUT/$2.log" 2>&1
  echo "== tests $2 rc=$? at $(( $(date +%s) - t0 )) s: $(grep -E '^\[  PASSED|^\[  FAILED  \] [0-9]+' "$OUT/$2.log" | tr '\n' ' ')"
  grep -E '^\[  FAILED  \] Flash' "$OUT/$2.log" | head -10
  pack
}
stage_test() {
  [ "$(left)" -gt 30 ] || return
  run_tests "${TEST_FILTER:-*FlashHopperBackward*:FlashHopperBackend.*:*FlashHopperPatterns*causal_S1000*}" test
}
stage_testall() {
  [ "$(left)" -gt 60 ] || return
  run_tests "*FlashHopper*" testall
}

stage_bench() {
  [ "$(left)" -gt 30 ] || return
  find_base
  # BENCH_ARGS, then BENCH_ARGS2 when set (a second grid), each into its own records folder.
  n=0
  for args in "${BENCH_ARGS:---mask full,causal --seqlen 16K}" "${BENCH_ARGS2:-}"; do
    [ -n "$args" ] && [ "$(left)" -gt 30 ] || continue
    n=$((n + 1)); d=bench$([ $n = 1 ] || echo $n)
    mkdir -p "$OUT/$d"
    timeout $(( $(left) - 5 )) $bin bench --backend ${BENCH_BACKENDS:-flash_hopper,cudnn} $args \
      --heads 64:8 --head-dim 128 --dtype bf16 --direction fwdbwd --check-rows 16 \
      --time-budget ${TIME_BUDGET:-0.3} --out "$OUT/$d" >"$OUT/$d.txt" 2>"$OUT/$d.err"
    echo "== $d ($args) rc=$? at $(( $(date +%s) - t0 )) s"; grep -v '^\[' "$OUT/$d.txt" | tail -25
    pack
  done
  if [ -n "$base_bin" ] && [ "$(left)" -gt 30 ]; then
    mkdir -p "$OUT/bench_base"
    timeout $(( $(left) - 5 )) $base_bin bench --backend flash_hopper \
      ${BENCH_ARGS:---mask full,causal --seqlen 16K} --heads 64:8 --head-dim 128 --dtype bf16 \
      --direction bwd --check-rows 16 --time-budget ${TIME_BUDGET:-0.3} --out "$OUT/bench_base" \
      >"$OUT/bench_base.txt" 2>&1
    echo "== base bench rc=$?"; grep -v '^\[' "$OUT/bench_base.txt" | tail -12
    pack
  fi
}

stage_ncu() {
  [ "$(left)" -gt 40 ] || return
  find_base
  prof() {  # $1 binary, $2 name
    # Its own limit: after the report ncu's shutdown of the benchmark process hung once.
    local lim=$(( $(left) - 10 )); [ $lim -gt ${NCU_TIMEOUT:-60} ] && lim=${NCU_TIMEOUT:-60}
    timeout $lim ncu --clock-control none -k regex:flash_hopper_bwd -c 1 \
      --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
      --section MemoryWorkloadAnalysis_Tables --section WarpStateStats --section SchedulerStats \
      --section LaunchStats -f -o "$OUT/ncu_$2" "$1" bench --backend flash_hopper \
      ${NCU_ARGS:---mask full --seqlen 8K} --heads 64:8 --head-dim 128 --dtype bf16 --direction bwd \
      --check-rows 0 --time-budget 0.01 --out /tmp/ncu_bench_$2 >"$OUT/ncu_$2.log" 2>&1
    echo "== ncu $2 rc=$? at $(( $(date +%s) - t0 )) s"
    ncu -i "$OUT/ncu_$2.ncu-rep" --page details >"$OUT/ncu_$2.txt" 2>&1
    ncu -i "$OUT/ncu_$2.ncu-rep" --page raw >"$OUT/ncu_$2_raw.txt" 2>&1
    pack
    grep -E "Compute \(SM\) Throughput|Memory Throughput|Duration|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Executed Ipc A|SM Frequency" "$OUT/ncu_$2.txt" | head -12
    grep -E "issue_stalled_[a-z_]+_per_warp_active.pct|pipe_tensor.*pct_of_peak|pipe_shared.*pct|data_pipe_lsu_wavefronts_mem_shared.sum |lsu_mem_shared.*pct" "$OUT/ncu_$2_raw.txt" | \
      awk '{print $NF, $1}' | sort -gr | head -16
  }
  prof $bin new
  [ -n "$base_bin" ] && [ "$(left)" -gt 40 ] && prof $base_bin base
}

stage_variants() {  # other LONGATTN_HOPPER_BWD_FLAGS values: some tests, the backward's timings
  for f in ${VARIANTS:-1 2 3}; do
    [ "$(left)" -gt 30 ] || return
    LONGATTN_HOPPER_BWD_FLAGS=$f run_tests \
      "${VARIANT_FILTER:-*FlashHopperBackward.*S1000*:*FlashHopperBackward.*S77*:FlashHopperBackwardEdges.*}" test_flags$f
    [ "$(left)" -gt 30 ] || return
    mkdir -p "$OUT/bench_flags$f"
    LONGATTN_HOPPER_BWD_FLAGS=$f timeout $(( $(left) - 5 )) $bin bench --backend flash_hopper \
      ${BENCH_ARGS:---mask full,causal --seqlen 16K} --heads 64:8 --head-dim 128 --dtype bf16 \
      --direction bwd --check-rows 16 --time-budget ${TIME_BUDGET:-0.3} --out "$OUT/bench_flags$f" \
      >"$OUT/bench_flags$f.txt" 2>&1
    echo "== flags $f bench rc=$?"; grep -v '^\[' "$OUT/bench_flags$f.txt" | tail -8
    pack
  done
}

stage_sanitize() {
  [ "$(left)" -gt 30 ] || return
  f=${SAN_FILTER:-'*FlashHopperBackward.*causal_document_S77_bf16*:*FlashHopperBackward.*full_S1000_fp16*:FlashHopperBackwardEdges.EmptyRows*'}
  for tool in memcheck racecheck synccheck; do
    [ "$(left)" -gt 15 ] || break
    timeout $(( $(left) - 5 )) compute-sanitizer --tool $tool --print-limit 5 \
      $B/tests/gpu/longattn_gpu_tests --gtest_filter="$f" --gtest_brief=1 >"$OUT/$tool.log" 2>&1
    rc=$?
    pack
    echo "== $tool rc=$rc $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/$tool.log" | tail -1) $(grep -cE '^\[       OK|PASSED' "$OUT/$tool.log")"
  done
}

for st in ${STAGES:-build test bench}; do
  [ "$st" = base ] && continue  # part of build
  "stage_$st"
done
echo "== done at $(( $(date +%s) - t0 )) s"
