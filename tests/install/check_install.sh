#!/usr/bin/env bash
# Installs the build tree into a temporary prefix and checks what a user
# gets: the files, the exported symbols, the CMake package and the .pc file.
set -euo pipefail
BUILD=$1 SRC=$2
PREFIX=$(mktemp -d /tmp/pmcr-install.XXXXXX)
trap 'rm -rf "$PREFIX"' EXIT
cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null

for f in bin/pmserver bin/pmcr bin/pmcr-run bin/pmcr-bench include/pmcr/pmcr.h include/pmcr/pmcr.hpp \
         include/pmcr/errors.h include/pmcr/region.h lib/libpmcr.so lib/libpmcr-region.so \
         lib/cmake/pmcr/pmcrConfig.cmake lib/cmake/pmcr/pmcrConfigVersion.cmake lib/cmake/pmcr/pmcrTargets.cmake \
         lib/pkgconfig/pmcr.pc lib/pkgconfig/pmcr-region.pc; do
  [[ -e $PREFIX/$f ]] || { echo "missing from the install: $f"; exit 1; }
done

# Each library exports its C API and nothing else: libpmcr the rank API,
# over libpmcr-region (the region API and the error functions), which needs
# no MPI.
exports() { nm -D --defined-only "$1" | awk '$2 ~ /[TDBRVW]/ {sub(/@.*/, "", $3); print $3}'; }
for lib in libpmcr.so libpmcr-region.so; do
  others=$(exports "$PREFIX/lib/$lib" | grep -v '^pmcr_' || true)
  [[ -z $others ]] || { echo "$lib exports non-pmcr symbols:"; echo "$others" | head; exit 1; }
done
exports "$PREFIX/lib/libpmcr.so" | grep -qx 'pmcr_checkpoint' || { echo "libpmcr.so: pmcr_checkpoint not exported"; exit 1; }
for sym in pmcr_strerror pmcr_last_error pmcr_connect pmcr_region_changed; do
  exports "$PREFIX/lib/libpmcr-region.so" | grep -qx "$sym" || { echo "libpmcr-region.so: $sym not exported"; exit 1; }
done
readelf -d "$PREFIX/lib/libpmcr.so" | grep -q 'NEEDED.*libpmcr-region' || { echo "libpmcr.so does not build on libpmcr-region.so"; exit 1; }
if readelf -d "$PREFIX/lib/libpmcr-region.so" | grep -i 'NEEDED.*mpi'; then echo "libpmcr-region.so links MPI"; exit 1; fi

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

# The region API from a program without MPI: find_package(pmcr) (pmcr::region)
# and pkg-config pmcr-region, against the installed pmserver on its own pool.
cmake -S "$SRC/examples/region-consumer" -B "$PREFIX/region-consumer" -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null
cmake --build "$PREFIX/region-consumer" >/dev/null
cc "$SRC/examples/region-consumer/main.c" -o "$PREFIX/pc-region-consumer" \
  $(PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig pkg-config --cflags --libs pmcr-region)
for exe in "$PREFIX/region-consumer/pmcr_region_consumer" "$PREFIX/pc-region-consumer"; do
  if readelf -d "$exe" | grep -i 'NEEDED.*mpi'; then echo "$exe links MPI"; exit 1; fi
done

# Both run under the installed pmcr-run with its own local pmserver: the
# second run resumes where the first stopped.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 UCX_NET_DEVICES=lo
POOL=/dev/shm/pmcr-install-$$.pool
SERVER_PID=
trap '[[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$PREFIX" "$POOL" "$POOL.log" "$POOL.key" "$POOL.r" "$POOL.r.ready"' EXIT
"$PREFIX/bin/pmserver" --pool "$POOL.r" --size 64M --listen 127.0.0.1:0 --ready-file "$POOL.r.ready" \
  --log-level warn 2>/dev/null &
SERVER_PID=$!
for _ in $(seq 100); do [[ -s $POOL.r.ready ]] && break; sleep 0.1; done
[[ -s $POOL.r.ready ]] || { echo "the installed pmserver did not start"; exit 1; }
for exe in "$PREFIX/region-consumer/pmcr_region_consumer" "$PREFIX/pc-region-consumer"; do
  out=$(LD_LIBRARY_PATH=$PREFIX/lib "$exe" "$(cat "$POOL.r.ready")" 5 2>&1) || { echo "$exe: $out"; exit 1; }
  grep -q "the follower's copy is identical" <<<"$out" || { echo "$exe: $out"; exit 1; }
done
kill "$SERVER_PID"
wait "$SERVER_PID" || true
SERVER_PID=
run() { "$PREFIX/bin/pmcr-run" --local-pool "$POOL" --local-size 64M --servers 127.0.0.1:0 --job consumer \
          --max-restarts 0 -- "$MPIEXEC" -n 2 "$@" 2>&1; }
out=$(run "$PREFIX/consumer/pmcr_consumer" 3) || { echo "$out"; exit 1; }
grep -q "at iteration 3, restarted from version -1" <<<"$out" || { echo "first run: $out"; exit 1; }
out=$(LD_LIBRARY_PATH=$PREFIX/lib run "$PREFIX/pc-consumer" 5) || { echo "$out"; exit 1; }
grep -q "at iteration 5, restarted from version 3" <<<"$out" || { echo "second run: $out"; exit 1; }
# Fortran (module pmcr with mpi_f08): the Fortran heat2d built from the
# installed package with find_package(pmcr) (pmcr::fortran) and with
# pkg-config pmcr-fortran and the MPI's own mpifort, and run.
fortran=""
if grep -q '^PMCR_FORTRAN:BOOL=ON' "$BUILD/CMakeCache.txt"; then
  for f in lib/libpmcr-fortran.so include/pmcr/fortran/pmcr.mod lib/pkgconfig/pmcr-fortran.pc \
           lib/cmake/pmcr/pmcrFortranTargets.cmake; do
    [[ -e $PREFIX/$f ]] || { echo "missing from the install: $f"; exit 1; }
  done
  MPIFORT=$(sed -n 's/^MPI_Fortran_COMPILER:FILEPATH=//p' "$BUILD/CMakeCache.txt")
  cmake -S "$SRC/examples/02-heat2d-fortran" -B "$PREFIX/fortran-consumer" -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null
  cmake --build "$PREFIX/fortran-consumer" >/dev/null
  "$MPIFORT" -fwrapv "$SRC/examples/02-heat2d-fortran/heat2d.f90" -o "$PREFIX/pc-fortran-consumer" \
    $(PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig pkg-config --cflags --libs pmcr-fortran)
  sums=()
  for exe in "$PREFIX/fortran-consumer/heat2d_fortran" "$PREFIX/pc-fortran-consumer"; do
    out=$(LD_LIBRARY_PATH=$PREFIX/lib "$PREFIX/bin/pmcr-run" --local-pool "$POOL" --local-size 64M \
            --servers 127.0.0.1:0 --job "fortran-$(basename "$exe")" --max-restarts 0 -- \
            "$MPIEXEC" -n 2 "$exe" --nx 64 --ny 64 --steps 20 --every 10 2>&1) || { echo "$exe: $out"; exit 1; }
    sums+=("$(grep -o 'final checksum [0-9a-f]*' <<<"$out")") || { echo "$exe: $out"; exit 1; }
  done
  [[ ${sums[0]} == "${sums[1]}" ]] || { echo "the two Fortran builds disagree: ${sums[*]}"; exit 1; }
  fortran=", Fortran (module pmcr) consumers through find_package and pkg-config"
fi
echo "install layout, exports, find_package(pmcr) and pkg-config MPI consumers under pmcr-run, region API consumers without MPI${fortran}: ok (MPI: $MPICC)"
