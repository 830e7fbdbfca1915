#!/usr/bin/env bash
# s9 call 1: build; split-tile + sparse + row-stride tests; block-64 forward, split vs 128-row tiles.
set -uo pipefail
export PATH=/usr/local/cuda/bin:$PATH
B=/tmp/hb9 W=/tmp/hw9
SKIP_BACKENDS="naive" BUDGET=330 B=$B W=$W OUT=$OUT bash tests/gpu/flash_hopper_check.sh build 2>&1 | tail -3
T=$B/tests/gpu/longattn_gpu_tests L=$B/apps/longattn
echo "== tests ($SECONDS s)"
timeout 200 $T --gtest_brief=1 --gtest_filter='*FlashHopperSplitTiles*:*FlashHopperSparse*:FlashHopperEdges.*:FlashEdges.*:*HeadSliceWithRowStride*:*FlashSparse*:FlashHopperBackend.*' > $OUT/tests.log 2>&1
echo "rc $?"; grep -E '^\[  (PASSED|FAILED)  \]|Failure' $OUT/tests.log | head -30
common="--heads 64:8 --head-dim 128 --dtype bf16 --direction fwd --sparse-heads 8 --keep 0.5 --warmup 1 --min-reps 3 --time-budget 0.2 --check-rows 8"
run() {  # tag, seconds, env, args...
  local tag=$1 t=$2 e=$3; shift 3
  echo "== $tag ($SECONDS s)"
  env $e timeout $t $L bench "$@" $common --out $OUT/$tag 2>$OUT/$tag.err | grep -vE "^\[|^#"
  echo "   rc ${PIPESTATUS[0]}"
}
run split 60 X=1 --backend flash_hopper --mask block_sparse_uniform,causal --sparse-block 64 --seqlen 32K,64K
run rows128 60 LONGATTN_FLASH_SPARSE_FWD_ROWS=128 --backend flash_hopper --mask block_sparse_uniform --sparse-block 64 --seqlen 32K,64K
run portable 60 X=1 --backend flash --mask block_sparse_uniform --sparse-block 64 --seqlen 32K
echo "done $SECONDS s"
