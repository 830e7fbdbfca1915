#!/usr/bin/env bash
# One call on the GPU machine: configure with the carried .deps (run scripts/make_deps.sh first,
# and pass .deps in the device run's carry), build, run the GPU tests, then the quick suite
# (naive and cudnn; full, causal, causal_document, sliding_window_causal, shared_question; 4K and
# 16K; GQA 64:8, D = 128, bf16, fwd and bwd), the timing-repeat check and PyTorch's cuDNN SDPA
# side by side. Logs and results go to $OUT (at most 8 files come back from the device machine).
#
# Usage: OUT=dir scripts/gpu_check.sh [--no-tests] [--no-torch]
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
OUT=${OUT:-$root/gpu-out}
mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH
build=$root/build-gpu
tests=1 torch=1
for a in "$@"; do
  case $a in
    --no-tests) tests=0 ;;
    --no-torch) torch=0 ;;
  esac
done
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }

log "$(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader)"
log "$(nvcc --version | tail -1); $(python3 -c 'import torch; print("torch", torch.__version__, "cuDNN", torch.backends.cudnn.version())' 2>&1)"
log "commit: ${LONGATTN_GIT_COMMIT:-unknown (set LONGATTN_GIT_COMMIT: the copied tree has no .git)}"
cmake -S . -B "$build" -G Ninja -DLONGATTN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
  -DLONGATTN_SKIP_BACKENDS="${LONGATTN_SKIP_BACKENDS:-}" >"$OUT/build.log" 2>&1 ||
  { log "configure failed"; tail -30 "$OUT/build.log"; exit 1; }
targets="longattn"
[ $tests = 1 ] && targets="$targets longattn_gpu_tests"
start=$(date +%s)
ninja -C "$build" -j16 $targets >>"$OUT/build.log" 2>&1 ||
  { log "build failed"; grep -E "error|FAILED" "$OUT/build.log" | head -40; exit 1; }
log "built in $(( $(date +%s) - start )) s"
bin=$build/apps/longattn

if [ $tests = 1 ]; then
  start=$(date +%s)
  ctest --test-dir "$build" -L gpu --output-on-failure --timeout 300 >"$OUT/ctest_gpu.log" 2>&1
  log "ctest -L gpu: exit $? in $(( $(date +%s) - start )) s: $(grep -E 'tests passed|tests failed' "$OUT/ctest_gpu.log")"
fi

quick=(--backend naive,cudnn --mask full,causal,causal_document,sliding_window_causal,shared_question
       --seqlen 4K,16K --heads 64:8 --head-dim 128 --dtype bf16 --direction fwdbwd)
log "command: longattn bench ${quick[*]} --out \$OUT/quick"
start=$(date +%s)
"$bin" bench "${quick[@]}" --out "$OUT/quick" >"$OUT/quick.txt" 2>"$OUT/quick.err"
log "quick suite: exit $? in $(( $(date +%s) - start )) s"
cat "$OUT/quick.txt"

# Timing spread: the same cases again (causal at 16K and 32K for the PyTorch comparison too).
rep=(--backend cudnn --mask causal --seqlen 16K,32K --heads 64:8 --head-dim 128 --dtype bf16
     --direction fwdbwd --no-check)
"$bin" bench "${rep[@]}" --out "$OUT/rep1" >/tmp/repeat.txt 2>/dev/null
"$bin" bench "${rep[@]}" --out "$OUT/rep2" >>/tmp/repeat.txt 2>/dev/null
python3 - "$OUT" <<'PY' | tee -a "$OUT/summary.txt"
import json, sys
out = sys.argv[1]
runs = [[json.loads(l) for l in open(f"{out}/rep{i}/records.jsonl")] for i in (1, 2)]
for a, b in zip(*runs):
    for phase in ("forward", "backward"):
        if a[phase] and b[phase]:
            ma, mb = a[phase]["median_ms"], b[phase]["median_ms"]
            print(f"repeat {a['case']['pattern']} S={a['case']['seqlen']} {phase}: {ma:.4f} vs {mb:.4f} ms, "
                  f"spread {abs(ma - mb) / min(ma, mb) * 100:.2f}%  ({a[phase]['tflops']:.1f} TF/s)")
PY

if [ $torch = 1 ]; then
  PYTHONUNBUFFERED=1 python3 python/compare_torch_sdpa.py --records "$OUT/rep1/records.jsonl" \
    --seqlen 16384 32768 --json "$OUT/torch_compare.json" 2>&1 | tee -a "$OUT/summary.txt"
fi
# Keep what comes back within 8 files: fold the repeat runs into one file.
cat "$OUT/rep1/records.jsonl" "$OUT/rep2/records.jsonl" >"$OUT/repeat_records.jsonl" 2>/dev/null
rm -rf "$OUT/rep1" "$OUT/rep2" "$OUT/quick.err"
ls -R "$OUT"
