#!/usr/bin/env bash
set -uo pipefail
export PATH=/usr/local/cuda/bin:$PATH
B=/tmp/hb9 W=/tmp/hw9
BUDGET=200 B=$B W=$W OUT=$OUT bash tests/gpu/flash_hopper_check.sh build 2>&1 | tail -1
timeout 150 $B/tests/gpu/longattn_gpu_tests --gtest_brief=1 --gtest_filter='*BadInputIsRejected*:*SplitTiles*:FlashHopperEdges.*:FlashHopperSparseEdges.*:FlashSparseEdges.*:*FlashHopperSparse*/*uniform*:GpuBackends.FlashRunsBlockSparseMasks' > $OUT/tests4.log 2>&1
echo "rc $?"; grep -E '^\[  (PASSED|FAILED)  \]|Failure' $OUT/tests4.log | head
