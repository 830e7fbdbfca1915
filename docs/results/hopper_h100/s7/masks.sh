#!/usr/bin/env bash
# Session 7: every static mask beside cuDNN and FlexAttention at SEQ (16K or 32K), GQA 64:8, D 128,
# bf16, fwd+bwd, records kept. Built by flash_hopper_check.sh into B (kept while the machine is warm).
set -uo pipefail
T0=$SECONDS
export PATH=/usr/local/cuda/bin:$PATH
export LONGATTN_GIT_COMMIT=${LONGATTN_GIT_COMMIT:?}
B=${B:-/tmp/hb7}
B=$B W=/tmp/hbw7-m BUDGET=400 bash tests/gpu/flash_hopper_check.sh build | grep '^=='
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
masks=full,causal,full_document,causal_document,sliding_window,sliding_window_causal,shared_question,causal_blockwise,prefix_lm_causal,prefix_lm_document,global_sliding_window,block_causal_document
mkdir -p /tmp/m7 && rm -rf /tmp/m7/$SEQ
timeout $(( ${CALL_LIMIT:-560} - (SECONDS-T0) )) $B/apps/longattn bench --backend flash_hopper,cudnn,torch.flex \
  --mask $masks --seqlen $SEQ --heads 64:8 --head-dim 128 --dtype bf16 --direction fwdbwd \
  --warmup 1 --min-reps 3 --time-budget 0.2 --check-rows 8 --out /tmp/m7/$SEQ >$OUT/masks_$SEQ.txt 2>$OUT/masks_$SEQ.err
echo "== exit $? at $((SECONDS-T0)) s"
cp /tmp/m7/$SEQ/records.jsonl $OUT/records_$SEQ.jsonl
grep -E '^(#backend| )' $OUT/masks_$SEQ.txt
