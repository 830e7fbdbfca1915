#!/usr/bin/env bash
# The flash_hopper forward's scheduling variants side by side (LONGATTN_HOPPER_FWD_FLAGS, see
# src/kernels/flash_hopper/launch.hpp: 7 = overlap + ping-pong + persistent, the default;
# 15 = 7 with 160-key chunks at head dim 128; 3 = overlap + ping-pong; 5 = overlap + persistent;
# 0 = none), on the device machine after flash_hopper_device_run.sh has built build-hopper (with
# the benchmark: BENCH=1, or `ninja longattn`):
#   tests/gpu/flash_hopper_variants.sh ["7 15 3 5 0"]
# Environment: VARIANT_FILTER (gtest filter run once per variant other than 7; empty = no tests),
#   BENCH_ARGS (default: --seqlen 16K --heads 64:8 --mask full,causal,causal_document,
#   sliding_window), DIMS (head dims to benchmark, default 128), DTYPE (bf16).
# Prints one line per benchmark case: flags, then the benchmark's row.
set -uo pipefail
OUT=${OUT:-/tmp/flash_hopper_out}
mkdir -p "$OUT"
B=build-hopper
flags=${1:-7 15 3 5 0}
if [ -n "${VARIANT_FILTER:-}" ]; then
  for f in $flags; do
    [ "$f" = 7 ] && continue
    LONGATTN_HOPPER_FWD_FLAGS=$f timeout ${TEST_TIMEOUT:-300} $B/test_flash_hopper \
      --gtest_filter="$VARIANT_FILTER" --gtest_brief=1 >"$OUT/test_flags$f.log" 2>&1
    echo "== flags $f tests rc=$? failed=$(grep -cE '^\[  FAILED' "$OUT/test_flags$f.log")" \
      "$(grep -E '^\[  PASSED' "$OUT/test_flags$f.log")"
  done
fi
[ -x $B/apps/longattn ] || ninja -C $B -j16 longattn >>"$OUT/build.log" 2>&1
for d in ${DIMS:-128}; do
  for f in $flags; do
    rm -rf /tmp/flash_hopper_bench_d${d}_f$f  # a fresh run folder: bench never overwrites records
    LONGATTN_HOPPER_FWD_FLAGS=$f timeout ${BENCH_TIMEOUT:-150} $B/apps/longattn bench \
      --backend flash_hopper \
      ${BENCH_ARGS:---seqlen 16K --heads 64:8 --mask full,causal,causal_document,sliding_window} \
      --head-dim $d --dtype ${DTYPE:-bf16} --direction fwd --check-rows 16 --time-budget 0.2 \
      --out /tmp/flash_hopper_bench_d${d}_f$f 2>&1 | grep -E '^ +flash_hopper' | sed "s/^/f$f /"
  done
done
