#!/usr/bin/env bash
# Installs the build tree into a temporary prefix and checks what a user
# gets: the files, the exported symbols, the CMake package and the .pc file.
set -euo pipefail
BUILD=$1 SRC=$2
PREFIX=$(mktemp -d /tmp/pmcr-install.XXXXXX)
trap 'rm -rf "$PREFIX"' EXIT
cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null

for f in bin/pmserver bin/pmcr bin/pmcr-run bin/pmcr-bench include/pmcr/pmcr.h include/pmcr/pmcr.hpp \
         include/pmcr/errors.h lib/libpmcr.so \
         lib/cmake/pmcr/pmcrConfig.cmake lib/cmake/pmcr/pmcrConfigVersion.cmake lib/cmake/pmcr/pmcrTargets.cmake \
         lib/pkgconfig/pmcr.pc; do
  [[ -e $PREFIX/$f ]] || { echo "missing from the install: $f"; exit 1; }
done

# libpmcr exports its C API and nothing else.
symbols=$(nm -D --defined-only "$PREFIX/lib/libpmcr.so" | awk '$2 ~ /[TDBRVW]/ {sub(/@.*/, "", $3); print $3}')
others=$(echo "$symbols" | grep -v '^pmcr_' || true)
[[ -z $others ]] || { echo "libpmcr.so exports non-pmcr symbols:"; echo "$others" | head; exit 1; }
echo "$symbols" | grep -qx 'pmcr_strerror' || { echo "pmcr_strerror not exported"; exit 1; }

# Installed binaries find their libraries.
"$PREFIX/bin/pmserver" --help >/dev/null
"$PREFIX/bin/pmcr" --help >/dev/null

"$PREFIX/bin/pmcr-run" --help >/dev/null

# find_package(pmcr) from an MPI project outside the tree, MPI from the package.
MPIEXEC=$(sed -n 's/^MPIEXEC_EXECUTABLE:FILEPATH=//p' "$BUILD/CMakeCache.txt")
MPICC=$(sed -n 's/^MPI_C_COMPILER:FILEPATH=//p' "$BUILD/CMakeCache.txt")
cmake -S "$SRC/examples/cmake-consumer" -B "$PREFIX/consumer" -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null
cmake --build "$PREFIX/consumer" >/dev/null

# pkg-config (pmcr.pc requires the MPI's own .pc).
PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig cc "$SRC/examples/cmake-consumer/main.c" -o "$PREFIX/pc-consumer" \
  $(PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig pkg-config --cflags --libs pmcr)

# Both run under the installed pmcr-run with its own local pmserver: the
# second run resumes where the first stopped.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 UCX_NET_DEVICES=lo
POOL=/dev/shm/pmcr-install-$$.pool
trap 'rm -rf "$PREFIX" "$POOL" "$POOL.log" "$POOL.key"' EXIT
run() { "$PREFIX/bin/pmcr-run" --local-pool "$POOL" --local-size 64M --servers 127.0.0.1:0 --job consumer \
          --max-restarts 0 -- "$MPIEXEC" -n 2 "$@" 2>&1; }
out=$(run "$PREFIX/consumer/pmcr_consumer" 3) || { echo "$out"; exit 1; }
grep -q "at iteration 3, restarted from version -1" <<<"$out" || { echo "first run: $out"; exit 1; }
out=$(LD_LIBRARY_PATH=$PREFIX/lib run "$PREFIX/pc-consumer" 5) || { echo "$out"; exit 1; }
grep -q "at iteration 5, restarted from version 3" <<<"$out" || { echo "second run: $out"; exit 1; }
echo "install layout, exports, find_package(pmcr) and pkg-config MPI consumers under pmcr-run: ok (MPI: $MPICC)"
