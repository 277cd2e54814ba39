#!/usr/bin/env bash
# Cross-builds the ra-agent release binary for ARM devices, without Docker.
#
# Usage: cross/build.sh [--glibc VERSION] [BUILD...]
#
# BUILD is one of the names below; with none, all four are built. The path of each binary
# goes to standard output, one per line; progress and the checks go to standard error.
#
#   aarch64-unknown-linux-musl            static, signers without dlopen (file-key, tpm)
#   armv7-unknown-linux-gnueabihf-static  static (glibc, +crt-static), same signers
#   aarch64-unknown-linux-gnu             dynamic, default features (file-key, pkcs11)
#   armv7-unknown-linux-gnueabihf         dynamic, default features (file-key, pkcs11)
#
# --glibc VERSION links the dynamic builds with cargo-zigbuild against that glibc version
# (for example 2.28), for devices older than the Debian 12 cross libc (2.36). Those binaries
# go to a separate target directory, glibc-VERSION/, under CARGO_TARGET_DIR.
#
# Missing tools are installed: the Debian cross compilers and libc headers (ring compiles
# C and assembly), the rustup targets, and for --glibc cargo-zigbuild and the ziglang
# package from PyPI. CARGO_TARGET_DIR is honoured (default: target/ in the repository).
#
# Each binary is checked after linking: a static build must have no program interpreter
# and no shared-library dependency, and a dynamic build reports the newest glibc symbol
# version it needs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=cross/targets.sh
source "$here/targets.sh"
cd "$cross_repo_root"

CROSS_GLIBC=
builds=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --glibc)
            [[ $# -ge 2 ]] || { echo "build.sh: --glibc needs a version, such as 2.28" >&2; exit 2; }
            CROSS_GLIBC=$2
            shift 2
            ;;
        --glibc=*)
            CROSS_GLIBC=${1#--glibc=}
            shift
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
            exit 0
            ;;
        -*)
            echo "build.sh: unknown option '$1'; see cross/build.sh --help" >&2
            exit 2
            ;;
        *)
            cross_triple "$1" >/dev/null || exit 2
            builds+=("$1")
            shift
            ;;
    esac
done
[[ ${#builds[@]} -gt 0 ]] || builds=("${CROSS_ALL_BUILDS[@]}")
if [[ -n "$CROSS_GLIBC" && ! "$CROSS_GLIBC" =~ ^2\.[0-9]+$ ]]; then
    echo "build.sh: invalid glibc version '$CROSS_GLIBC'; give it as 2.N, such as 2.28" >&2
    exit 2
fi

sudo_cmd=()
[[ "$(id -u)" -eq 0 ]] || sudo_cmd=(sudo)

# install_apt PACKAGE...: installs the Debian packages that are not installed yet.
install_apt() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [[ ${#missing[@]} -gt 0 ]] || return 0
    echo "build.sh: installing ${missing[*]}" >&2
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# install_rust_target TRIPLE: adds the target's standard library when it is missing.
install_rust_target() {
    rustup target list --installed | grep -qx "$1" && return 0
    echo "build.sh: rustup target add $1" >&2
    rustup target add "$1" >&2
}

install_zig() {
    if ! command -v cargo-zigbuild >/dev/null; then
        echo "build.sh: cargo install --locked cargo-zigbuild" >&2
        cargo install --locked cargo-zigbuild >&2
    fi
    # cargo-zigbuild runs `zig` from PATH, else `python3 -m ziglang`.
    if ! command -v zig >/dev/null && ! python3 -c 'import ziglang' 2>/dev/null; then
        echo "build.sh: pip install ziglang" >&2
        python3 -m pip install --quiet ziglang >&2
    fi
}

apt_packages=(binutils)
for build in "${builds[@]}"; do
    case "$(cross_gnu_prefix "$build")" in
        aarch64-linux-gnu) apt_packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross) ;;
        arm-linux-gnueabihf) apt_packages+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross) ;;
    esac
done
install_apt "${apt_packages[@]}"
[[ -z "$CROSS_GLIBC" ]] || install_zig

static_features=$(cross_static_features)

# check_binary NAME PATH: fails when a static build links dynamically; reports the glibc
# a dynamic one needs.
check_binary() {
    local build=$1 binary=$2
    if cross_is_static "$build"; then
        if readelf -lW "$binary" | grep -q 'INTERP' || readelf -dW "$binary" | grep -q '(NEEDED)'; then
            echo "build.sh: $binary is not fully static:" >&2
            readelf -dW "$binary" | grep '(NEEDED)' >&2 || true
            return 1
        fi
        echo "build.sh: $build: static, $(stat -c %s "$binary") bytes, features $static_features" >&2
    else
        local needs libs
        needs=$(readelf -W --dyn-syms "$binary" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)
        libs=$(readelf -dW "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
        echo "build.sh: $build: dynamic, $(stat -c %s "$binary") bytes, needs ${needs:-no versioned glibc symbol} (libraries: ${libs% })" >&2
        if [[ -n "$CROSS_GLIBC" && -n "$needs" ]] &&
            [[ "$(printf '%s\n' "GLIBC_$CROSS_GLIBC" "$needs" | sort -V | tail -n 1)" != "GLIBC_$CROSS_GLIBC" ]]; then
            echo "build.sh: $binary needs $needs, newer than the requested glibc $CROSS_GLIBC" >&2
            return 1
        fi
    fi
}

for build in "${builds[@]}"; do
    triple=$(cross_triple "$build")
    prefix=$(cross_gnu_prefix "$build")
    install_rust_target "$triple"

    upper=$(echo "$triple" | tr 'a-z-' 'A-Z_')
    lower=$(echo "$triple" | tr '-' '_')
    zig=
    if [[ -n "$CROSS_GLIBC" ]] && ! cross_is_static "$build"; then
        zig=1
    fi
    if [[ -n "$zig" ]]; then
        # cargo-zigbuild sets compiler and linker to `zig cc` for the requested glibc.
        unset "CC_$lower" "AR_$lower" "CARGO_TARGET_${upper}_LINKER"
    else
        # ring's build script compiles C and assembly with CC_<triple>. The GNU cross gcc
        # also serves the musl target, because ring uses almost no libc headers and rustc
        # links its own self-contained musl CRT objects and libc.a.
        export "CC_$lower=$prefix-gcc" "AR_$lower=$prefix-ar"
        export "CARGO_TARGET_${upper}_LINKER=$prefix-gcc"
    fi

    target_dir=$(cross_target_dir "$build")
    features=(--no-default-features --features "$static_features")
    if ! cross_is_static "$build"; then
        features=()
    fi
    rustflags_var="CARGO_TARGET_${upper}_RUSTFLAGS"
    if [[ "$build" == armv7-unknown-linux-gnueabihf-static ]]; then
        export "$rustflags_var=-C target-feature=+crt-static"
    else
        unset "$rustflags_var"
    fi

    if [[ -n "$zig" ]]; then
        echo "build.sh: $build against glibc $CROSS_GLIBC (cargo zigbuild)" >&2
        cargo zigbuild --release -p ra-agent --target "$triple.$CROSS_GLIBC" \
            --target-dir "$target_dir" "${features[@]}" >&2
    else
        echo "build.sh: $build (cargo build, features ${features[*]:-default})" >&2
        cargo build --release -p ra-agent --target "$triple" \
            --target-dir "$target_dir" "${features[@]}" >&2
    fi

    binary="$target_dir/$triple/release/ra-agent"
    check_binary "$build" "$binary"
    echo "$binary"
done
