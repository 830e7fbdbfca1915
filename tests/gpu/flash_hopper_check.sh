#!/usr/bin/env bash
# flash_hopper (sm_90a) on the device machine, in one time-boxed call: build, GPU tests,
# sanitizers, the benchmark beside cuDNN, the schedule variants, an Nsight Compute profile.
#
#   [VAR=value ...] bash tests/gpu/flash_hopper_check.sh [STAGE ...]
#   (no STAGE arguments: the STAGES variable; default "build test bench")
#
# Carry .deps (scripts/make_deps.sh: googletest, fmt/CLI11/json, cudnn_frontend, cutlass/include).
# Stages run in the order given, each only while enough of BUDGET seconds is left; every command
# in them is stopped by `timeout` at the end of the budget, so the call ends inside its limit.
#   build     configure + ninja longattn longattn_gpu_tests (sm_90a, cuDNN on) into B
#   base      build BASE_SRC's longattn (an older tree, flash_hopper and flash alone) into B-base,
#             in the background, alongside build when build is named too; or name a built
#             binary with BASE_BIN. bench and ncu then run it beside the new one
#   smoke     SMOKE_FILTER: a few forward and backward cases and the edge tests (a hang shows early)
#   test      TEST_FILTER (default every flash_hopper test)
#   sanitize  compute-sanitizer SAN_TOOLS on SAN_FILTER (small forward and backward cases)
#   bench     longattn bench --backend BENCH_BACKENDS BENCH_ARGS --direction DIRECTION into bench/,
#             then BENCH_ARGS2 (if set) into bench2/; the base binary's flash_hopper on each too
#   variants  for each FWD_FLAGS value F: LONGATTN_HOPPER_FWD_FLAGS=F, the FWD_VARIANT_FILTER tests
#             (none if empty) and flash_hopper's fwd rows on VARIANT_ARGS; then the same for
#             BWD_FLAGS (LONGATTN_HOPPER_BWD_FLAGS, BWD_VARIANT_FILTER, bwd rows)
#   ncu       ncu --clock-control none on one NCU_DIRECTION launch of flash_hopper on NCU_ARGS
#             (at most NCU_TIMEOUT s: ncu once hung after writing its report); the base's too
# Flags (src/kernels/flash_hopper/launch.hpp): forward bits 1 overlap, 2 ping-pong, 4 persistent,
# 8 160-key chunks at D 128, 16 head-major units (default 23); backward bits 1 pipelined,
# 4 head-major grid, 8 dQ by TMA reduction, 16 descending walk where the mask prefers it, 32 on
# every mask (default 29). Set for the whole call, they apply to every stage
# (variants sets its own).
#
# Environment, with defaults:
#   BUDGET=280  B=/tmp/hopper-build  W=/tmp/hopper-work (emptied first)  OUT=/tmp/hopper-out
#   SKIP_BACKENDS=       LONGATTN_SKIP_BACKENDS of the build ("cudnn;naive": faster; then set
#                        BENCH_BACKENDS without cudnn)
#   BASE_SRC= BASE_BIN=  TEST_FILTER='*FlashHopper*'  SMOKE_FILTER, SAN_FILTER: in the code below
#   SAN_TOOLS='memcheck racecheck synccheck'
#   BENCH_BACKENDS=flash_hopper,cudnn  DIRECTION=fwdbwd  BENCH_ARGS2=  CHECK_ROWS=16  TIME_BUDGET=0.3
#   BENCH_ARGS='--mask full,causal --seqlen 16K --heads 64:8 --head-dim 128 --dtype bf16'
#   FWD_FLAGS='7 15 3 5 0'  BWD_FLAGS='13 61' (empty: none)  VARIANT_ARGS=$BENCH_ARGS
#   VARIANT_TIMEOUT=60 (s, per benchmark run)
#   FWD_VARIANT_FILTER='*ForwardMatchesReference/*_S1000_*H6x2*:FlashHopperEdges.*'
#   BWD_VARIANT_FILTER='*GradientsMatchReference/*_S77_*:*GradientsMatchReference/*_S1000_*:FlashHopperBackwardEdges.*'
#   NCU_DIRECTION=bwd  NCU_TIMEOUT=60  NCU_ARGS='--mask full --seqlen 8K --heads 64:8 --head-dim 128 --dtype bf16'
#   NCU_EXTRA=           more ncu options (e.g. '--section SourceCounters')
#   LONGATTN_GIT_COMMIT: the commit the records name (a copied tree may have no .git)
# Prints a line per step and the benchmark rows. Every log, record and ncu report goes to W,
# packed into OUT/logs.tgz after each step (the device tool returns at most 8 files). B and W lie
# outside the tree because a carried folder is replaced at every call; a warm machine keeps B.
# Example: three forward variants at head dims 128 and 64 (no backward ones), then sanitizers:
#   FWD_FLAGS='7 15 0' BWD_FLAGS= VARIANT_ARGS="--mask full,causal,causal_document,sliding_window \
#     --seqlen 16K --heads 64:8 --head-dim 128,64 --dtype bf16" \
#     bash tests/gpu/flash_hopper_check.sh build variants sanitize
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
stages=" ${*:-${STAGES:-build test bench}} "
for st in $stages; do
  case $st in
    build | base | smoke | test | sanitize | bench | variants | ncu) ;;
    *) echo "unknown stage '$st' (see the top of $0)" >&2; exit 2 ;;
  esac
done
BUDGET=${BUDGET:-280} B=${B:-/tmp/hopper-build} W=${W:-/tmp/hopper-work} OUT=${OUT:-/tmp/hopper-out}
# Test names: All/FlashHopperPatterns.ForwardMatchesReference/NAME for the forward,
# All/FlashHopperBackward.GradientsMatchReference/NAME for the backward (NAME: mask_S<len>_<dtype>_
# H<q>x<kv>[_D64]), FlashHopperEdges.*, FlashHopperBackwardEdges.*, FlashHopperBackend.*.
fwd='*ForwardMatchesReference/' bwd='*GradientsMatchReference/'
TEST_FILTER=${TEST_FILTER:-*FlashHopper*}
SMOKE_FILTER=${SMOKE_FILTER:-*Reference/causal_S77_bf16_H6x2:*Reference/full_S1000_fp16_H2x2*:*Reference/causal_document_S2049_bf16_H6x2*:*Reference/sliding_window_S1000_bf16_H6x2_D64:FlashHopper*Edges.*:FlashHopperBackend.*}
SAN_FILTER=${SAN_FILTER:-*Reference/causal_document_S77_bf16_H6x2:*Reference/causal_S77_bf16_H6x2_D64:${fwd}shared_question_S1000_bf16_H6x2:${bwd}full_S1000_fp16_H2x2:FlashHopper*Edges.EmptyRows*}
SAN_TOOLS=${SAN_TOOLS:-memcheck racecheck synccheck}
BENCH_BACKENDS=${BENCH_BACKENDS:-flash_hopper,cudnn} DIRECTION=${DIRECTION:-fwdbwd}
BENCH_ARGS=${BENCH_ARGS:---mask full,causal --seqlen 16K --heads 64:8 --head-dim 128 --dtype bf16}
CHECK_ROWS=${CHECK_ROWS:-16} TIME_BUDGET=${TIME_BUDGET:-0.3}
FWD_FLAGS=${FWD_FLAGS-7 15 3 5 0} BWD_FLAGS=${BWD_FLAGS-13 61}
VARIANT_ARGS=${VARIANT_ARGS:-$BENCH_ARGS} VARIANT_TIMEOUT=${VARIANT_TIMEOUT:-60}
FWD_VARIANT_FILTER=${FWD_VARIANT_FILTER-${fwd}*_S1000_*H6x2*:FlashHopperEdges.*}
BWD_VARIANT_FILTER=${BWD_VARIANT_FILTER-${bwd}*_S77_*:${bwd}*_S1000_*:FlashHopperBackwardEdges.*}
NCU_DIRECTION=${NCU_DIRECTION:-bwd} NCU_TIMEOUT=${NCU_TIMEOUT:-60}
NCU_ARGS=${NCU_ARGS:---mask full --seqlen 8K --heads 64:8 --head-dim 128 --dtype bf16}

export PATH=/usr/local/cuda/bin:$PATH
rm -rf "$W" && mkdir -p "$W" "$OUT" || exit 2
bin=$B/apps/longattn tests=$B/tests/gpu/longattn_gpu_tests
T0=$SECONDS
left() { echo $((BUDGET - (SECONDS - T0))); }
at() { echo "at $((SECONDS - T0)) s"; }
# need N WHAT: more than N seconds of the budget left? Else says that WHAT is skipped.
need() { [ "$(left)" -gt "$1" ] || { echo "== $2 skipped: $(left) s of the budget left"; return 1; }; }
# have FILE WHAT: FILE built? Else says that WHAT is skipped.
have() { [ -x "$1" ] || { echo "== $2 skipped: no $1 (run the build stage)"; return 1; }; }
# lim [CAP]: the next command's time limit: the budget's rest less 5 s, at most CAP.
lim() {
  local t=$(($(left) - 5))
  [ -n "${1:-}" ] && [ "$t" -gt "$1" ] && t=$1
  [ "$t" -gt 1 ] || t=1
  echo "$t"
}
has() { [[ "$stages" == *" $1 "* ]]; }
pack() { tar czf "$OUT/logs.tgz" -C "$W" . 2>/dev/null; }
trap pack EXIT
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv,noheader |
  tee "$W/gpu.txt"

cfg=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGATTN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a
     -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON -DLONGATTN_BENCHMARKS=OFF -DLONGATTN_DEPS_DIR="$PWD/.deps")
stage_build() {
  need 30 build || return
  has base && start_base
  { timeout "$(lim)" cmake -S . -B "$B" "${cfg[@]}" -DLONGATTN_SKIP_BACKENDS="${SKIP_BACKENDS:-}" &&
      timeout "$(lim)" ninja -C "$B" -j16 longattn longattn_gpu_tests; } >"$W/build.log" 2>&1
  local rc=$?
  grep -E "cudnn backend|flash_hopper backend" "$W/build.log"
  if [ "$rc" != 0 ]; then
    echo "== build failed rc=$rc $(at)"
    grep -B2 -A12 -E 'error|FAILED' "$W/build.log" | head -60
    exit 1
  fi
  echo "== build done $(at)"
}

# The older tree: built in the background (base_pid), waited for by find_base, which sets base_bin.
base_pid="" base_waited="" base_bin=""
start_base() {
  [ -n "${BASE_SRC:-}" ] && [ -z "$base_pid" ] || return 0
  { timeout "$(lim)" cmake -S "$BASE_SRC" -B "$B-base" "${cfg[@]}" -DLONGATTN_TESTS=OFF \
      -DLONGATTN_SKIP_BACKENDS="cudnn;naive" &&
      timeout "$(lim)" ninja -C "$B-base" -j16 longattn; } >"$W/build_base.log" 2>&1 &
  base_pid=$!
  echo "== base build of $BASE_SRC started $(at)"
}
stage_base() {
  need 30 base || return
  start_base
  [ -n "${BASE_SRC:-}${BASE_BIN:-}" ] || echo "== base: reusing $B-base (set BASE_SRC or BASE_BIN)"
}
find_base() {
  if [ -n "$base_pid" ] && [ -z "$base_waited" ]; then
    wait "$base_pid"
    local rc=$?
    base_waited=1
    echo "== base build rc=$rc $(at)"
    [ "$rc" = 0 ] || tail -20 "$W/build_base.log"
  fi
  base_bin=${BASE_BIN:-}
  has base && [ -z "$base_bin" ] && base_bin=$B-base/apps/longattn
  [ -z "$base_bin" ] || [ -x "$base_bin" ] || { echo "== no base binary $base_bin"; base_bin=""; }
}

summary() { grep -E '^\[  (PASSED|FAILED)  \] [0-9]' "$1" | tr '\n' ' '; }
# run_tests NAME FILTER: the GPU tests matching FILTER, log W/NAME.log.
run_tests() {
  have "$tests" "$1" && need 20 "$1" || return
  timeout "$(lim)" "$tests" --gtest_filter="$2" --gtest_brief=1 >"$W/$1.log" 2>&1
  local rc=$?
  echo "== $1 rc=$rc$([ "$rc" = 124 ] && echo ' (timed out: a hang?)') $(at): $(summary "$W/$1.log")"
  grep -E '^\[  FAILED  \] [^0-9]|Failure|LSE\[|: \|\|x' "$W/$1.log" | awk '!seen[$0]++' | head -12
  pack
}
stage_smoke() { run_tests smoke "$SMOKE_FILTER"; }
stage_test() { run_tests test "$TEST_FILTER"; }

stage_sanitize() {
  have "$tests" sanitize || return
  local tool rc
  for tool in $SAN_TOOLS; do
    need 15 "$tool" || return
    timeout "$(lim)" compute-sanitizer --tool "$tool" --print-limit 5 "$tests" \
      --gtest_filter="$SAN_FILTER" --gtest_brief=1 >"$W/$tool.log" 2>&1
    rc=$?
    echo "== $tool rc=$rc $(at): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$W/$tool.log" | tail -1);" \
      "$(summary "$W/$tool.log")"
    pack
  done
}

# bench NAME BINARY BACKENDS DIRECTION ARGS [CAP [PREFIX]]: records into W/NAME (a fresh folder:
# bench refuses one that holds records), output W/NAME.txt; prints the table header and rows.
bench() {
  have "$2" "$1" && need 20 "$1" || return
  local -a args
  read -ra args <<<"$5"
  mkdir -p "$W/$1"
  timeout "$(lim "${6:-}")" "$2" bench --backend "$3" "${args[@]}" --direction "$4" \
    --check-rows "$CHECK_ROWS" --time-budget "$TIME_BUDGET" --out "$W/$1" >"$W/$1.txt" 2>"$W/$1.err"
  local rc=$?
  echo "== $1 rc=$rc $(at): --backend $3 $5 --direction $4"
  grep -E '^(#backend| )' "$W/$1.txt" | sed "s/^/${7:-}/"
  [ "$rc" = 0 ] || tail -3 "$W/$1.err"
  pack
}
stage_bench() {
  find_base
  local name=bench args
  for args in "$BENCH_ARGS" "${BENCH_ARGS2:-}"; do
    if [ -n "$args" ]; then
      bench "$name" "$bin" "$BENCH_BACKENDS" "$DIRECTION" "$args"
      [ -z "$base_bin" ] || bench "${name}_base" "$base_bin" flash_hopper "$DIRECTION" "$args"
    fi
    name=bench2
  done
}

# variant fwd|bwd F FILTER: with LONGATTN_HOPPER_{FWD|BWD}_FLAGS=F, the FILTER tests (none if
# empty) and flash_hopper's rows in that direction.
variant() {
  local -x "LONGATTN_HOPPER_${1^^}_FLAGS=$2"
  [ -z "$3" ] || run_tests "test_$1$2" "$3"
  bench "bench_$1$2" "$bin" flash_hopper "$1" "$VARIANT_ARGS" "$VARIANT_TIMEOUT" "$1 flags $2 "
}
stage_variants() {
  local f
  for f in $FWD_FLAGS; do need 20 variants || return; variant fwd "$f" "$FWD_VARIANT_FILTER"; done
  for f in $BWD_FLAGS; do need 20 variants || return; variant bwd "$f" "$BWD_VARIANT_FILTER"; done
}

# prof BINARY NAME: ncu report W/ncu_NAME.ncu-rep, its details and raw pages as text, a digest.
prof() {
  local -a args
  read -ra args <<<"$NCU_ARGS"
  timeout "$(lim "$NCU_TIMEOUT")" ncu --clock-control none -k "regex:flash_hopper_$NCU_DIRECTION" -c 1 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --section MemoryWorkloadAnalysis_Tables --section WarpStateStats --section SchedulerStats \
    --section LaunchStats ${NCU_EXTRA:-} -f -o "$W/ncu_$2" "$1" bench --backend flash_hopper "${args[@]}" \
    --direction "$NCU_DIRECTION" --check-rows 0 --time-budget 0.01 --out "$W/ncu_bench_$2" \
    >"$W/ncu_$2.log" 2>&1
  echo "== ncu $2 rc=$? $(at): $NCU_DIRECTION $NCU_ARGS"
  timeout "$(lim 60)" ncu -i "$W/ncu_$2.ncu-rep" --page details >"$W/ncu_$2.txt" 2>&1
  timeout "$(lim 60)" ncu -i "$W/ncu_$2.ncu-rep" --page raw >"$W/ncu_$2_raw.txt" 2>&1
  pack
  grep -E "Compute \(SM\) Throughput|Memory Throughput|Duration|Issue Slots Busy|No Eligible|Warp Cycles Per Issued|Executed Ipc A|SM Frequency" \
    "$W/ncu_$2.txt" | head -12
  grep -E "issue_stalled_[a-z_]+_per_warp_active.pct|pipe_tensor.*pct_of_peak|pipe_shared.*pct|data_pipe_lsu_wavefronts_mem_shared.sum |lsu_mem_shared.*pct" \
    "$W/ncu_$2_raw.txt" | awk '{print $NF, $1}' | sort -gr | head -16
}
stage_ncu() {
  find_base
  if have "$bin" ncu && need 40 ncu; then prof "$bin" new; fi
  if [ -n "$base_bin" ] && need 40 "ncu base"; then prof "$base_bin" base; fi
}

for st in $stages; do
  "stage_$st"
  pack
done
[ -z "$base_pid" ] || [ -n "$base_waited" ] || find_base  # not left running
echo "== done $(at)"
