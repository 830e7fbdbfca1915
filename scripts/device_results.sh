#!/usr/bin/env bash
# The measurements recorded under docs/results/, in device calls on the GPU machine (run
# scripts/make_deps.sh here first and carry .deps). Each step writes into $OUT.
#   scripts/device_results.sh build      configure + build (sm_90a), GPU tests
#   scripts/device_results.sh kernels    12 static masks, fwd+bwd, our kernels beside cuDNN and the
#                                        PyTorch peers in one run (KERNEL_BACKENDS, KERNEL_SEQLENS:
#                                        default flash_hopper,flash,cudnn,torch.sdpa.cudnn,
#                                        torch.sdpa.flash,torch.flex at 16K,32K)
#   scripts/device_results.sh quick      `longattn suite quick` and its report
#   scripts/device_results.sh dense [S]  resume the dense suite from docs/results/dense_h100 for at
#                                        most S seconds (default 480); records and log into $OUT
# Set LONGATTN_GIT_COMMIT to the commit the tree was copied from (the copy may carry no .git, or a stale one).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
OUT=${OUT:-$root/device-out}
mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH
build=$root/build-device
bin=$build/apps/longattn
shapes=(--heads 64:8 --head-dim 128 --dtype bf16)

case ${1:-} in
  build)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/env.txt"
    python3 -c 'import torch; print("torch", torch.__version__, "cuDNN", torch.backends.cudnn.version())' \
      >>"$OUT/env.txt" 2>&1
    cmake -S . -B "$build" -G Ninja -DLONGATTN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
      -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON -DLONGATTN_BENCHMARKS=OFF >"$OUT/build.log" 2>&1 &&
      ninja -C "$build" -j16 longattn longattn_gpu_tests >>"$OUT/build.log" 2>&1 ||
      { grep -E -A5 "error|FAILED" "$OUT/build.log" | head -60; exit 1; }
    echo "== built"
    ctest --test-dir "$build" -L gpu --output-on-failure --timeout 400 >"$OUT/ctest_gpu.log" 2>&1
    echo "== ctest -L gpu: exit $?"; tail -5 "$OUT/ctest_gpu.log"
    ;;
  kernels)
    backends=${KERNEL_BACKENDS:-flash_hopper,flash,cudnn,torch.sdpa.cudnn,torch.sdpa.flash,torch.flex}
    args=(--backend "$backends" --seqlen "${KERNEL_SEQLENS:-16K,32K}" "${shapes[@]}"
          --direction fwdbwd --check-rows 64 --time-budget 0.3)
    echo "command: longattn bench ${args[*]} --out \$OUT/kernels" | tee "$OUT/kernels.txt"
    "$bin" bench "${args[@]}" --out "$OUT/kernels" >>"$OUT/kernels.txt" 2>"$OUT/kernels.err"
    echo "== exit $?"; cat "$OUT/kernels.txt"; tail -5 "$OUT/kernels.err"
    ;;
  quick)
    echo "command: longattn suite quick --out \$OUT/quick" | tee "$OUT/quick.txt"
    "$bin" suite quick --out "$OUT/quick" --check-rows 64 >>"$OUT/quick.txt" 2>"$OUT/quick.err"
    echo "== exit $?"; cat "$OUT/quick.txt"; tail -3 "$OUT/quick.err"
    ;;
  dense)
    # The suite resumes: the committed records seed the run folder, recorded cases are skipped.
    run=$root/runs/dense-h100
    mkdir -p "$run"
    [ -f "$run/records.jsonl" ] || cp docs/results/dense_h100/records.jsonl "$run/records.jsonl"
    args=(--out "$run" --warmup 1 --min-reps 3 --time-budget 0.05 --check-rows 8)
    echo "command: longattn suite dense ${args[*]}" | tee "$OUT/dense.txt"
    timeout "${2:-480}" "$bin" suite dense "${args[@]}" >>"$OUT/dense.txt" 2>"$OUT/dense.err"
    echo "== exit $? (124: stopped by the time limit; run again to go on)"
    cp "$run/records.jsonl" "$OUT/records.jsonl"
    wc -l "$OUT/records.jsonl"; tail -3 "$OUT/dense.err"
    ;;
  *) echo "usage: $0 build|kernels|quick|dense [seconds]" >&2; exit 2 ;;
esac
