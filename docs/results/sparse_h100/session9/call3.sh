#!/usr/bin/env bash
# s9 call 3: blocks of 64, keeps 0.2 / 0.5 / 0.8 at 32K and 64K (fwdbwd), split tiles against
# 128-row tiles (LONGATTN_FLASH_SPARSE_FWD_ROWS=128) on the forward; records packed in OUT/s9.tgz.
set -uo pipefail
export PATH=/usr/local/cuda/bin:$PATH
B=/tmp/hb9 W=/tmp/hw9 R=/tmp/s9
mkdir -p $R
BUDGET=200 B=$B W=$W OUT=$OUT bash tests/gpu/flash_hopper_check.sh build 2>&1 | tail -1
L=$B/apps/longattn
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader | tee $R/gpu.txt
common="--heads 64:8 --head-dim 128 --dtype bf16 --sparse-heads 8 --warmup 1 --min-reps 3 --time-budget 0.2 --check-rows 8"
run() {  # tag, seconds, env, args...
  local tag=$1 t=$2 e=$3; shift 3
  echo "== $tag ($SECONDS s)"
  env $e timeout $t $L bench "$@" $common --out $R/$tag 2>$R/$tag.err | grep -vE "^\[|^#"
  echo "   rc ${PIPESTATUS[0]}"
  tar czf $OUT/s9.tgz -C $R .
}
for k in 0.2 0.5 0.8; do
  run u64_k$k 80 X=1 --backend flash_hopper --mask block_sparse_uniform --sparse-block 64 --keep $k --seqlen 32K,64K --direction fwdbwd
done
run causal 40 X=1 --backend flash_hopper --mask causal --seqlen 32K,64K --direction fwdbwd
for k in 0.2 0.8; do
  run rows128_k$k 40 LONGATTN_FLASH_SPARSE_FWD_ROWS=128 --backend flash_hopper --mask block_sparse_uniform --sparse-block 64 --keep $k --seqlen 32K --direction fwd
done
echo "done $SECONDS s"
