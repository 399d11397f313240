#!/usr/bin/env bash
# Installs drover's C face (and the `drover` command) into a prefix, as a distribution would:
#
#   PREFIX/include/drover.h
#   PREFIX/lib/libdrover.so.VERSION, with the links libdrover.so.ABI (the SONAME) and libdrover.so
#   PREFIX/lib/libdrover.a                      (debug info stripped: 6 MB instead of 12)
#   PREFIX/lib/pkgconfig/drover.pc, drover-static.pc
#   PREFIX/lib/cmake/drover/droverConfig.cmake, droverConfigVersion.cmake
#                                               (targets drover::drover and drover::drover_static)
#   PREFIX/bin/drover                           (the command, when it was built)
#   PREFIX/share/doc/drover/                    (README, LICENSE-MIT, LICENSE-APACHE)
#
# Usage:
#   scripts/install.sh /usr/local                          # cargo build --release, then install
#   scripts/install.sh --profile debug --no-build PREFIX   # what `cargo build --workspace` built
#   DESTDIR=/tmp/stage scripts/install.sh /usr             # staged install, for packagers
#
# LIBDIR (default PREFIX/lib) and CARGO_TARGET_DIR (default target/) are honoured. Then build with
# `pkg-config --cflags --libs drover` or CMake's `find_package(drover)`: see include/drover.h.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "install.sh: $*" >&2; exit 2; }

profile=release
build=1
prefix=
while [[ $# -gt 0 ]]; do
    case "$1" in
        --profile) [[ $# -ge 2 ]] || die "--profile needs a value (release or debug)"; profile=$2; shift 2 ;;
        --profile=*) profile=${1#--profile=}; shift ;;
        --no-build) build=; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [[ -z "$prefix" ]] || die "one PREFIX only (got $prefix and $1)"; prefix=$1; shift ;;
    esac
done
[[ -n "$prefix" ]] || die "usage: scripts/install.sh [--profile release|debug] [--no-build] PREFIX"
[[ "$prefix" == /* ]] || die "PREFIX must be an absolute path (got $prefix): pkg-config and CMake files record it"
[[ "$profile" == release || "$profile" == debug ]] || die "--profile is release or debug (got $profile)"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
abi=$(sed -n 's/^pub const DROVER_ABI_VERSION: u32 = \([0-9]*\);$/\1/p' ffi/src/lib.rs)
[[ -n "$version" && -n "$abi" ]] || die "cannot read the version from Cargo.toml or the ABI version from ffi/src/lib.rs"

if [[ -n "$build" ]]; then
    cargo_args=(build --locked -p drover-ffi -p drover-cli)
    [[ "$profile" == release ]] && cargo_args+=(--release)
    cargo "${cargo_args[@]}"
fi
target=${CARGO_TARGET_DIR:-target}/$profile
for file in libdrover.so libdrover.a; do
    [[ -f "$target/$file" ]] || die "$target/$file is missing: build it first (cargo build${profile/debug/ --workspace}${profile/release/ --release}) or drop --no-build"
done

libdir=${LIBDIR:-$prefix/lib}
includedir=$prefix/include
bindir=$prefix/bin
docdir=$prefix/share/doc/drover
dest=${DESTDIR:-}
install -d "$dest$includedir" "$dest$libdir/pkgconfig" "$dest$libdir/cmake/drover" "$dest$docdir"

install -m 644 include/drover.h "$dest$includedir/drover.h"
install -m 755 "$target/libdrover.so" "$dest$libdir/libdrover.so.$version"
ln -sfn "libdrover.so.$version" "$dest$libdir/libdrover.so.$abi"
ln -sfn "libdrover.so.$abi" "$dest$libdir/libdrover.so"
install -m 644 "$target/libdrover.a" "$dest$libdir/libdrover.a"
# Rust's standard library brings its debug info into the archive (half its size); a program
# linked with it can still be debugged in its own code.
if command -v strip >/dev/null; then
    strip --strip-debug "$dest$libdir/libdrover.a"
else
    echo "install.sh: strip not found: libdrover.a keeps its debug info" >&2
fi
if [[ -x "$target/drover" ]]; then
    install -d "$dest$bindir"
    install -m 755 "$target/drover" "$dest$bindir/drover"
fi
install -m 644 README.md LICENSE-MIT LICENSE-APACHE "$dest$docdir/"

# What a static link needs besides libdrover.a (`rustc --print native-static-libs`, minus -lc).
static_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl"
description="drover, a process supervisor: its C API"
url="https://github.com/drover-rs/drover"
cat > "$dest$libdir/pkgconfig/drover.pc" <<EOF
prefix=$prefix
libdir=$libdir
includedir=$includedir

Name: drover
Description: $description (shared library)
URL: $url
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -ldrover
Libs.private: $static_libs
EOF
cat > "$dest$libdir/pkgconfig/drover-static.pc" <<EOF
prefix=$prefix
libdir=$libdir
includedir=$includedir

Name: drover-static
Description: $description (static library)
URL: $url
Version: $version
Cflags: -I\${includedir}
Libs: \${libdir}/libdrover.a $static_libs
EOF

cmake_libs=$(echo "$static_libs" | sed 's/-l//g; s/ /;/g')
cat > "$dest$libdir/cmake/drover/droverConfig.cmake" <<EOF
# drover's CMake package, written by scripts/install.sh:
#   find_package(drover $version REQUIRED)
#   target_link_libraries(app PRIVATE drover::drover)          # libdrover.so.$abi
#   target_link_libraries(app PRIVATE drover::drover_static)   # libdrover.a
if(NOT TARGET drover::drover)
  add_library(drover::drover SHARED IMPORTED)
  set_target_properties(drover::drover PROPERTIES
    IMPORTED_LOCATION "$libdir/libdrover.so.$version"
    IMPORTED_SONAME "libdrover.so.$abi"
    INTERFACE_INCLUDE_DIRECTORIES "$includedir")
endif()
if(NOT TARGET drover::drover_static)
  add_library(drover::drover_static STATIC IMPORTED)
  set_target_properties(drover::drover_static PROPERTIES
    IMPORTED_LOCATION "$libdir/libdrover.a"
    INTERFACE_INCLUDE_DIRECTORIES "$includedir"
    INTERFACE_LINK_LIBRARIES "$cmake_libs")
endif()
set(drover_ABI_VERSION $abi)
EOF
cat > "$dest$libdir/cmake/drover/droverConfigVersion.cmake" <<EOF
# Compatible: the same major version, and before 1.0 the same minor (0.x releases may break).
set(PACKAGE_VERSION "$version")
set(PACKAGE_VERSION_COMPATIBLE FALSE)
set(PACKAGE_VERSION_EXACT FALSE)
if(PACKAGE_FIND_VERSION VERSION_EQUAL PACKAGE_VERSION)
  set(PACKAGE_VERSION_EXACT TRUE)
endif()
string(REGEX MATCH "^([0-9]+)\\\\.([0-9]+)" _drover_mm "\${PACKAGE_VERSION}")
set(_drover_major "\${CMAKE_MATCH_1}")
set(_drover_minor "\${CMAKE_MATCH_2}")
if(NOT PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION
   AND PACKAGE_FIND_VERSION_MAJOR EQUAL _drover_major
   AND (_drover_major GREATER 0 OR PACKAGE_FIND_VERSION_MINOR EQUAL _drover_minor))
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
endif()
EOF

echo "install.sh: drover $version (ABI $abi, $profile) installed in $dest$prefix"
