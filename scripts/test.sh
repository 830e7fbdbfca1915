#!/usr/bin/env bash
# The test command: configure, build and run every test with CTest, then build a second tree with
# AddressSanitizer + UndefinedBehaviorSanitizer and run the CPU tests there too.
#
# GPU backends and GPU tests are built when a GPU is present (nvidia-smi works); otherwise the
# build is CPU-only. --cuda-compile additionally compiles all CUDA code without running it (a
# compile check for machines with nvcc and no GPU).
#
# Usage: scripts/test.sh [--no-sanitize] [--cuda-compile] [-j N]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

jobs=$(nproc)
sanitize=1
cuda_compile=0
while [ $# -gt 0 ]; do
  case $1 in
    --no-sanitize) sanitize=0 ;;
    --cuda-compile) cuda_compile=1 ;;
    -j) jobs=$2; shift ;;
    -j*) jobs=${1#-j} ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

cuda=OFF
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then cuda=ON; fi

step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }
start=$SECONDS

# configure_build DIR TARGETS CMAKE_ARGS...: configure with Ninja and build TARGETS ("" = all).
configure_build() {
  local dir=$1 targets=$2; shift 2
  cmake -S "$root" -B "$dir" -G Ninja "$@" >"$dir.configure.log" 2>&1 ||
    { cat "$dir.configure.log"; return 1; }
  # shellcheck disable=SC2086  # TARGETS is a space-separated list
  ninja -C "$dir" -j "$jobs" $targets
}

step "build (Release, CUDA $cuda) in build/test"
mkdir -p build
configure_build build/test "" -DCMAKE_BUILD_TYPE=Release -DLONGATTN_CUDA=$cuda
step "ctest in build/test"
ctest --test-dir build/test --output-on-failure -j "$jobs" --timeout 1500

if [ $sanitize = 1 ]; then
  step "build with -fsanitize=address,undefined in build/asan (CPU only)"
  # The library, the CLI and their GoogleTest suite; the MPI runs, the Python bridge and the
  # browser test exercise no further C++ of their own and run in the Release tree above.
  # -O1 -g1 (line tables) compiles 2.5x faster than RelWithDebInfo's -O2 -g and keeps asserts on.
  # Without MPI: the CP code runs under mpirun in the Release tree only, and this tree is then
  # the check that longattn builds and behaves on a machine without MPI (as on the GPU images).
  configure_build build/asan "longattn longattn_tests" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" -DLONGATTN_CUDA=OFF \
    -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON -DLONGATTN_SANITIZE=address,undefined \
    -DLONGATTN_BENCHMARKS=OFF
  step "ctest under ASan + UBSan in build/asan"
  # Any undefined behaviour fails the test instead of only printing a report.
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
    ctest --test-dir build/asan --output-on-failure -j "$jobs" --timeout 3000 -L cpu \
      -LE 'mpi|python|browser'
fi

if [ $cuda_compile = 1 ] && [ $cuda = OFF ]; then
  step "compile check of the CUDA code in build/cuda (no GPU: nothing runs)"
  configure_build build/cuda "" -DCMAKE_BUILD_TYPE=Release -DLONGATTN_CUDA=ON -DLONGATTN_BENCHMARKS=OFF
fi

step "all tests passed in $((SECONDS - start)) s"
