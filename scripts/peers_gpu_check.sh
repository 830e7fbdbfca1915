#!/usr/bin/env bash
# The peer bridge on the GPU machine (issue 8): every available peer (PyTorch SDPA flash / cudnn /
# efficient / math, FlexAttention, FlashAttention 2/3/4 and FlashInfer when importable) and
# longattn's own GPU backends, on the 12 static masks at 8K and 32K, forward and backward, in one
# `longattn bench` run (peers are backends of its sweep); the conformance table (each peer's mask
# format rasterised against the canonical mask, plus a numerical fwd+bwd check at S = 1000); a
# short summary at the end (conformance per peer x mask, TF/s tables, torch.sdpa.cudnn against
# longattn's cudnn within 5%).
#
#   scripts/peers_gpu_check.sh download        here (PyPI reachable): the wheels into .whl/ (~27 MiB:
#                                              flashinfer-python, flash-attn-4 and their missing
#                                              pure-Python deps) and .whl-big/ (the 88 MiB CuTe DSL
#                                              library FlashAttention-4 needs, in two ~44 MiB parts)
#   scripts/peers_gpu_check.sh stage           GPU machine: keeps the .whl-big parts carried by this
#                                              call in /tmp/longattn-stage (two calls, one part each,
#                                              back to back while the machine stays warm)
#   scripts/peers_gpu_check.sh run [options]   GPU machine: install, build, check, summarise
#
# run options: --seqlen 8K,32K  --mask LIST  --heads 64:8  --backends LIST (default: every
#   available peer and every GPU backend built in)  --skip-bench  --skip-conformance  --skip-build
#   --time-budget 0.2  --case-timeout 900  --build-dir build-gpu
# Results go to $OUT (or runs/peers-gpu): summary.txt, log.txt, conformance.jsonl, bench/ and
# cudnn-mha/ (records.jsonl, results.csv: written as the cases finish, so a call cut short at its
# time limit still brings its records back; seven files, the device tool brings back eight).
#
# Device calls (the tree carries .deps from scripts/make_deps.sh):
#   run      carry [".deps", ".whl"]     command: bash scripts/peers_gpu_check.sh run
#   with FlashAttention-4, first (back to back):
#            carry [".whl-big/part-aa"]  command: bash scripts/peers_gpu_check.sh stage
#            carry [".whl-big/part-ab"]  command: bash scripts/peers_gpu_check.sh stage
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mode=${1:-run}
shift || true

PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# name==version of each wheel: flashinfer (JIT-compiled with the machine's nvcc) and the
# FlashAttention-4 chain; torch, numpy, einops, ninja, click, requests, tabulate, nvidia-ml-py,
# cuda-bindings are on the GPU image already.
WHEELS=(flashinfer-python==0.6.18.post1 apache-tvm-ffi==0.1.15.post2 flash-attn-4==4.0.0b36
        quack-kernels==0.6.5 torch-c-dlpack-ext==0.1.5 nvidia-cutlass-dsl==4.8.1
        nvidia-cutlass-dsl-libs-base==4.8.1 nvidia-cutlass-dsl-libs-core==4.8.1)
BIG=nvidia-cutlass-dsl-libs-cu13==4.8.1
STAGE=/tmp/longattn-stage

case "$mode" in
download)
  for d in .whl .whl-big; do
    grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude
  done
  rm -rf .whl .whl-big && mkdir -p .whl .whl-big
  python3 -m pip download -q --no-deps --only-binary=:all: --pre --python-version 3.12 \
    --implementation cp "${PLATFORMS[@]}" -d .whl "${WHEELS[@]}" || exit 1
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${PLATFORMS[@]}" -d .whl-big "$BIG" || exit 1
  big=$(ls .whl-big/*.whl)
  (cd .whl-big && sha256sum "$(basename "$big")" > ../.whl/big.sha256 && split -b 44M "$(basename "$big")" part- && rm "$(basename "$big")")
  du -sh .whl .whl-big; ls .whl .whl-big
  exit 0 ;;
stage)
  mkdir -p "$STAGE"
  for p in .whl-big/part-*; do [ -f "$p" ] && cp -v "$p" "$STAGE/"; done
  ls -la "$STAGE"
  exit 0 ;;
run) ;;
*) echo "usage: $0 download | stage | run [options]" >&2; exit 2 ;;
esac

seqlens=8K,32K
masks=full,causal,full_document,causal_document,sliding_window,sliding_window_causal,shared_question,causal_blockwise,prefix_lm_causal,prefix_lm_document,global_sliding_window,block_causal_document
heads=64:8
backends=""
conformance=1
bench=1
build=1
budget=0.2
timeout=900
bdir=build-gpu
while [ $# -gt 0 ]; do
  case "$1" in
    --seqlen) seqlens=$2; shift ;;
    --mask) masks=$2; shift ;;
    --heads) heads=$2; shift ;;
    --backends) backends=$2; shift ;;
    --skip-conformance) conformance=0 ;;
    --skip-build) build=0 ;;
    --skip-bench) bench=0 ;;
    --time-budget) budget=$2; shift ;;
    --case-timeout) timeout=$2; shift ;;
    --build-dir) bdir=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

OUT=${OUT:-$root/runs/peers-gpu}
mkdir -p "$OUT"
work=$(mktemp -d /tmp/longattn-peers-check.XXXX)
log=$OUT/log.txt
: > "$log"
say() { echo "== $*" | tee -a "$log"; }
export PYTHONUNBUFFERED=1
export PATH=/usr/local/cuda/bin:$PATH  # nvcc: our build, and FlashInfer's JIT compilation
[ -d /usr/local/cuda ] && export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}

# 1. Wheels -> /tmp/site (the device README's recipe), the CuTe DSL library reassembled from its
#    staged parts when both arrived. .pth files are not read from PYTHONPATH: their folders are
#    added by hand.
say "environment: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))' 2>&1 | tee -a "$log"
if ls .whl/*.whl > /dev/null 2>&1; then
  wheels=(.whl/*.whl)
  if [ -f .whl/big.sha256 ]; then
    for p in .whl-big/part-*; do [ -f "$p" ] && mkdir -p "$STAGE" && cp "$p" "$STAGE/"; done
    name=$(awk '{print $2}' .whl/big.sha256)
    if ls "$STAGE"/part-* > /dev/null 2>&1; then
      cat "$STAGE"/part-* > "$work/$name"
      if (cd "$work" && sha256sum -c "$root/.whl/big.sha256" > /dev/null 2>&1); then
        wheels+=("$work/$name")
        say "CuTe DSL library reassembled from $(ls "$STAGE"/part-* | wc -l) parts"
      else
        say "CuTe DSL library parts incomplete (stage both parts first): FlashAttention-4 stays unavailable"
      fi
    else
      say "no CuTe DSL library staged: FlashAttention-4 stays unavailable (see the header of this script)"
    fi
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "${wheels[@]}" >> "$log" 2>&1 || say "pip install reported errors (see log)"
  # Python reads .pth files only in site directories, not in PYTHONPATH: let `site` process them
  # (path lines and `import` lines alike; the CuTe DSL's puts its dsl_packages folder, which
  # holds the `cutlass` module FlashAttention-4 imports, on sys.path) and keep what they added.
  extra=$(python3 -S -c 'import site, sys
before = set(sys.path)
site.addsitedir("/tmp/site")
print(":".join(["/tmp/site"] + [p for p in sys.path if p not in before and p != "/tmp/site"]))') ||
    extra=/tmp/site
  export PYTHONPATH=$extra${PYTHONPATH:+:$PYTHONPATH}
  say "installed ${#wheels[@]} wheels into /tmp/site"
else
  say "no .whl/ carried: only the peers already on this machine (PyTorch's)"
fi

# 2. Build (the CLI only; kernels for sm_90a).
cli=$bdir/apps/longattn
if [ "$build" = 1 ]; then
  say "building $cli"
  start=$(date +%s)
  if ! { cmake -S . -B "$bdir" -G Ninja -DLONGATTN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
           -DCMAKE_BUILD_TYPE=Release && ninja -C "$bdir" longattn; } >> "$log" 2>&1; then
    say "BUILD FAILED"; tail -30 "$log"; exit 1
  fi
  say "built in $(( $(date +%s) - start )) s"
fi
# `peers` and the bridge flags of `bench` (--case-timeout, --peer-device, ...) come together.
if ! "$cli" peers --help > /dev/null 2>&1 ||
   [[ $("$cli" bench --help 2>&1) != *--case-timeout* ]]; then
  say "$cli has no peer bridge (peers command, bench --case-timeout): see apps/CMakeLists.txt"
  exit 1
fi

# 3. What is available.
say "peers"
"$cli" peers list 2>&1 | tee -a "$log"
if [ -z "$backends" ]; then
  peers=$("$cli" peers list --json 2>/dev/null | python3 -c 'import json,sys; print(",".join(p["name"] for p in json.load(sys.stdin) if p["available"]))')
  own=$("$cli" bench --list-backends 2>/dev/null | awk '$2 == "gpu" {print $1}' | paste -sd, -)
  backends=$(echo "$own,$peers" | sed 's/^,//; s/,$//')
fi
say "backends: $backends"

# 4. The benchmark: own backends and peers side by side in one run (one Python process, so the
#    peers' compiled kernels are reused from S to S).
if [ "$bench" = 1 ]; then
  say "bench S=$seqlens heads $heads: $backends"
  "$cli" bench --backend "$backends" --mask "$masks" --seqlen "$seqlens" --heads "$heads" \
    --head-dim 128 --dtype bf16 --direction fwdbwd --time-budget "$budget" \
    --case-timeout "$timeout" --out "$OUT/bench" 2>> "$log" | tee -a "$log"
  # cuDNN side by side at MHA too (PyTorch's cuDNN SDPA may refuse GQA; the issue asks the two
  # to agree within 5%).
  if [[ ",$backends," == *",torch.sdpa.cudnn,"* && ",$backends," == *",cudnn,"* ]]; then
    say "cuDNN side by side, heads 64:64"
    "$cli" bench --backend cudnn,torch.sdpa.cudnn --mask full,causal --seqlen "$seqlens" \
      --heads 64:64 --head-dim 128 --dtype bf16 --direction fwdbwd --time-budget "$budget" \
      --case-timeout "$timeout" --out "$OUT/cudnn-mha" 2>> "$log" | tee -a "$log"
  fi
fi

# 5. Conformance: every pattern at S = 1000 (odd: partial tiles and blocks), formats rasterised,
#    then fwd+bwd numerics; the block-sparse ones again at S = 1024 (blocks dividing S: FlashInfer's
#    BSR wrapper with its causal element mask).
if [ "$conformance" = 1 ]; then
  : > "$OUT/conformance.jsonl"
  for S in 1000 1024; do
    sel=(); [ "$S" = 1024 ] && sel=(--mask block_sparse_uniform,block_sparse_variable)
    say "conformance (S = $S, heads 4:2, numeric fwd+bwd) ${sel[*]}"
    timeout 1500 "$cli" peers conformance --seqlen "$S" --heads 4:2 --numeric "${sel[@]}" \
      --out "$work/conf$S" --case-timeout "$timeout" 2>> "$log" | tee -a "$log"
    cat "$work/conf$S/conformance.jsonl" >> "$OUT/conformance.jsonl" 2>/dev/null
  done
fi

# 6. Summary.
conf_arg=()
[ -f "$OUT/conformance.jsonl" ] && conf_arg=(--conformance "$OUT/conformance.jsonl")
cat "$OUT"/bench/records.jsonl "$OUT"/cudnn-mha/records.jsonl > "$work/records.jsonl" 2>/dev/null
PYTHONPATH=$root/python${PYTHONPATH:+:$PYTHONPATH} python3 -m longattn_peers summary \
  "$work/records.jsonl" "${conf_arg[@]}" > "$OUT/summary.txt" 2>> "$log"
{ echo; echo "== summary"; cat "$OUT/summary.txt"; } | tee -a "$log"
rm -rf "$work"
