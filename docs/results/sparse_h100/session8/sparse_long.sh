#!/usr/bin/env bash
# s8: block-sparse at 64K / 128K beside FlexAttention's block-sparse mode (issue 6 gaps).
set -uo pipefail
B=/tmp/hb8
STAGES=build BUDGET=200 B=$B W=/tmp/hw OUT=$OUT bash tests/gpu/flash_hopper_check.sh build 2>&1 | tail -2
L=$B/apps/longattn
common="--heads 64:8 --head-dim 128 --dtype bf16 --direction fwdbwd --sparse-heads 8 --keep 0.5 --warmup 1 --min-reps 3 --time-budget 0.2 --check-rows 8"
run() {  # tag, seconds, args...
  local tag=$1 t=$2; shift 2
  echo "== $tag ($SECONDS s)"
  timeout $t $L bench "$@" $common --out $OUT/$tag 2>$OUT/$tag.err | grep -vE "^\[|^#" 
  echo "   rc ${PIPESTATUS[0]}"
}
run u64_64k 170 --backend flash_hopper,torch.flex --mask block_sparse_uniform --sparse-block 64 --seqlen 64K
run u128_128k 150 --backend flash_hopper,torch.flex --mask block_sparse_uniform --sparse-block 128 --seqlen 128K
run var_64k 120 --backend flash_hopper,torch.flex --mask block_sparse_variable --avg-block 256 --seqlen 64K
echo "done $SECONDS s"
