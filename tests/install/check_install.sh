#!/usr/bin/env bash
# Installs the build tree into a temporary prefix and checks what a user
# gets: the files, the exported symbols, the CMake package and the .pc file.
set -euo pipefail
BUILD=$1 SRC=$2
PREFIX=$(mktemp -d /tmp/pmcr-install.XXXXXX)
trap 'rm -rf "$PREFIX"' EXIT
cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null

for f in bin/pmserver bin/pmcr bin/pmcr-bench include/pmcr/pmcr.h include/pmcr/errors.h lib/libpmcr.so \
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

# find_package(pmcr) from a project outside the tree.
cmake -S "$SRC/examples/cmake-consumer" -B "$PREFIX/consumer" -DCMAKE_PREFIX_PATH="$PREFIX" >/dev/null
cmake --build "$PREFIX/consumer" >/dev/null
LD_LIBRARY_PATH=$PREFIX/lib "$PREFIX/consumer/pmcr_consumer"

# pkg-config.
PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig cc "$SRC/examples/cmake-consumer/main.c" -o "$PREFIX/pc-consumer" \
  $(PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig pkg-config --cflags --libs pmcr)
LD_LIBRARY_PATH=$PREFIX/lib "$PREFIX/pc-consumer" >/dev/null
echo "install layout, exports, find_package(pmcr) and pkg-config: ok"
