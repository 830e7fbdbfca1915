#!/usr/bin/env bash
# One device call for the flash_hopper forward, inside a time budget: build, smoke tests, the
# scheduling variants' benchmark rows (flash_hopper_variants.sh), every test, the non-default
# variants' tests on a subset, sanitizers; each stage only while BUDGET seconds (default 280) are
# not used up, so that the call ends inside its limit.
#   STAGES="build smoke bench full variants sanitize" tests/gpu/flash_hopper_fwd_check.sh
# Environment: STAGES (default "build smoke bench full"), BUDGET, SMOKE / FULL / VFILTER (gtest
#   filters), FLAGS / FLAGS64 (variants benchmarked at D 128 / 64), VFLAGS (variants tested).
set -uo pipefail
export OUT=${OUT:-/tmp/flash_hopper_out}
mkdir -p $OUT
T0=$SECONDS
BUDGET=${BUDGET:-280}
left() { echo $(( BUDGET - (SECONDS - T0) )); }
B=build-hopper
has() { [[ " ${STAGES:-build smoke bench full} " == *" $1 "* ]]; }
if has build; then
  TEST_TIMEOUT=60 BENCH=0 tests/gpu/flash_hopper_device_run.sh none || exit 1
  ninja -C $B -j16 longattn >$OUT/build_app.log 2>&1 || { tail -20 $OUT/build_app.log; exit 1; }
  echo "== built at $((SECONDS - T0)) s"
fi
if has smoke; then
  timeout 60 $B/test_flash_hopper --gtest_brief=1 \
    --gtest_filter="${SMOKE:-*causal_S77_bf16_H6x2:*full_S1000_fp16_H2x2*:*causal_document_S2049_bf16_H6x2*:*sliding_window_S1000_bf16_H6x2_D64:FlashHopperEdges.*:FlashHopperBackend.*}" \
    >$OUT/smoke.log 2>&1
  echo "== smoke rc=$? $(grep -E '^\[  (PASSED|FAILED)' $OUT/smoke.log | head -8 | tr '\n' ' ') at $((SECONDS - T0)) s"
  grep -E 'Failure|LSE\[|: \|\|x' $OUT/smoke.log | head -8
fi
if has bench; then
  for f in ${FLAGS:-7 15 3 5 0}; do
    t=$(left); [ $t -lt 20 ] && { echo "== no time for bench f$f"; break; }
    [ $t -gt 45 ] && t=45
    BENCH_TIMEOUT=$t DIMS=128 tests/gpu/flash_hopper_variants.sh "$f"
  done
  for f in ${FLAGS64:-7}; do
    t=$(left); [ $t -lt 20 ] && break
    [ $t -gt 45 ] && t=45
    BENCH_TIMEOUT=$t DIMS=64 tests/gpu/flash_hopper_variants.sh "$f"
  done
  echo "== bench done at $((SECONDS - T0)) s"
fi
if has full; then
  t=$(left)
  if [ $t -gt 20 ]; then
    timeout $t $B/test_flash_hopper --gtest_filter="${FULL:-*}" >$OUT/full.log 2>&1
    echo "== full rc=$? ok=$(grep -c '^\[       OK' $OUT/full.log) failed=$(grep -c '^\[  FAILED' $OUT/full.log) $(grep -E '^\[  PASSED' $OUT/full.log) at $((SECONDS - T0)) s"
    grep -E '^\[  FAILED' $OUT/full.log | head -10
  fi
fi
if has variants; then
  for f in ${VFLAGS:-15 3 5 0}; do
    t=$(left); [ $t -lt 15 ] && break
    LONGATTN_HOPPER_FWD_FLAGS=$f timeout $t $B/test_flash_hopper --gtest_filter="${VFILTER:-*_S1000_*H6x2*:FlashHopperEdges.*}" >$OUT/test_f$f.log 2>&1
    echo "== flags $f rc=$? ok=$(grep -c '^\[       OK' $OUT/test_f$f.log) failed=$(grep -c '^\[  FAILED' $OUT/test_f$f.log)"
  done
fi
if has sanitize; then
  f='*causal_document_S77_bf16_H6x2:*shared_question_S1000_bf16_H6x2:*causal_S77_bf16_H6x2_D64:FlashHopperEdges.EmptyRows*'
  for tool in memcheck synccheck; do
    t=$(left); [ $t -lt 15 ] && break
    timeout $t compute-sanitizer --tool $tool --print-limit 5 $B/test_flash_hopper \
      --gtest_filter="$f" --gtest_brief=1 >"$OUT/$tool.log" 2>&1
    echo "== $tool rc=$? $(grep -E 'ERROR SUMMARY' "$OUT/$tool.log" | tail -1)"
  done
fi
echo "== end at $((SECONDS - T0)) s"
