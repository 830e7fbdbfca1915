#!/usr/bin/env bash
# s7: block-sparse backward under flags 13 (ascending) and 29 (the rule: descending on these masks).
B=${B:-/tmp/hb7}; mkdir -p $OUT
BUDGET=200 W=/tmp/ws OUT=$OUT/b bash tests/gpu/flash_hopper_check.sh build | grep '^=='
C='--heads 64:8 --head-dim 128 --dtype bf16 --sparse-heads 8 --keep 0.5 --direction bwd --warmup 1 --min-reps 3 --time-budget 0.2 --check-rows 8'
i=0
for args in "--mask block_sparse_uniform --sparse-block 128 --seqlen 32K,64K" "--mask block_sparse_uniform --sparse-block 64 --seqlen 32K" "--mask block_sparse_variable --avg-block 256 --seqlen 32K" "--mask causal --seqlen 32K,64K"; do
  for f in 13 29; do
    i=$((i+1)); mkdir -p /tmp/sp$i
    LONGATTN_HOPPER_BWD_FLAGS=$f timeout 100 $B/apps/longattn bench --backend flash_hopper $args $C --out /tmp/sp$i > /tmp/sp$i.txt 2>&1
    echo "== flags $f rc=$? $args"; grep -E '^ ' /tmp/sp$i.txt | sed "s/^/flags $f /"
    cat /tmp/sp$i/records.jsonl >> $OUT/sparse_records.jsonl
  done
done
