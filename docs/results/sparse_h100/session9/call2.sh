#!/usr/bin/env bash
# s9 call 2: full build; flash/flash_hopper GPU tests (split tiles, sparse, row stride); memcheck
# and racecheck on split cases; block-64 beside FlexAttention; 128K block-128 forward rerun.
set -uo pipefail
export PATH=/usr/local/cuda/bin:$PATH
B=/tmp/hb9 W=/tmp/hw9
BUDGET=200 B=$B W=$W OUT=$OUT bash tests/gpu/flash_hopper_check.sh build 2>&1 | tail -2
T=$B/tests/gpu/longattn_gpu_tests L=$B/apps/longattn
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
echo "== tests ($SECONDS s)"
timeout 200 $T --gtest_brief=1 --gtest_filter='*FlashHopper*:*FlashSparse*:*HeadSlice*:FlashEdges.*:*FlashBlockTranspose*' > $OUT/tests.log 2>&1
echo "rc $?"; grep -E '^\[  (PASSED|FAILED)  \]|Failure' $OUT/tests.log | head -20
for tool in memcheck racecheck; do
  timeout 40 compute-sanitizer --tool $tool --print-limit 5 $T --gtest_brief=1 \
    --gtest_filter='*SplitTiles*/causal_document_S1000_bf16_H6x2:*SplitTiles*/shared_question_S77_fp16_H2x2_D64:FlashHopperSparseEdges.*' > $OUT/$tool.log 2>&1
  echo "== $tool rc $?: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' $OUT/$tool.log | tail -1) $(grep -E '^\[  (PASSED|FAILED)' $OUT/$tool.log | tr '\n' ' ')"
done
common="--heads 64:8 --head-dim 128 --dtype bf16 --sparse-heads 8 --keep 0.5 --warmup 1 --min-reps 3 --time-budget 0.2 --check-rows 8"
run() {  # tag, seconds, args...
  local tag=$1 t=$2; shift 2
  echo "== $tag ($SECONDS s)"
  timeout $t $L bench "$@" $common --out $OUT/$tag 2>$OUT/$tag.err | grep -vE "^\[|^#"
  echo "   rc ${PIPESTATUS[0]}"
}
run u64_32k 110 --backend flash_hopper,torch.flex --mask block_sparse_uniform,causal --sparse-block 64 --seqlen 32K --direction fwdbwd
run u128_128k 70 --backend flash_hopper --mask block_sparse_uniform --sparse-block 128 --seqlen 128K --direction fwd
echo "done $SECONDS s"
