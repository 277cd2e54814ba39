# Target table shared by cross/build.sh, cross/smoke.sh and bench/run.sh (sourced, not run).
#
# Each build has a name. Three names are Rust target triples. The fourth,
# armv7-unknown-linux-gnueabihf-static, is the armv7 glibc triple linked with
# `-C target-feature=+crt-static`. It stands in for armv7-unknown-linux-musleabihf, whose
# rust-std the rustup server used here does not offer (`rustup target add` gets HTTP 404).
#
#   name                                  linking  signers                   runs under
#   aarch64-unknown-linux-musl            static   file-key (+ tpm)          qemu-aarch64
#   armv7-unknown-linux-gnueabihf-static  static   file-key (+ tpm)          qemu-arm
#   aarch64-unknown-linux-gnu             dynamic  default (file-key, pkcs11) qemu-aarch64 -L /usr/aarch64-linux-gnu
#   armv7-unknown-linux-gnueabihf         dynamic  default (file-key, pkcs11) qemu-arm -L /usr/arm-linux-gnueabihf
#
# A static binary cannot dlopen a PKCS#11 module, so the static builds leave out `pkcs11`.
# `tpm` joins the static feature set as soon as agent/Cargo.toml declares that feature.

# shellcheck shell=bash

CROSS_ALL_BUILDS=(
    aarch64-unknown-linux-musl
    armv7-unknown-linux-gnueabihf-static
    aarch64-unknown-linux-gnu
    armv7-unknown-linux-gnueabihf
)

cross_repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# cross_triple NAME: prints the Rust target triple of a build.
cross_triple() {
    case "$1" in
        aarch64-unknown-linux-musl) echo aarch64-unknown-linux-musl ;;
        armv7-unknown-linux-gnueabihf-static | armv7-unknown-linux-gnueabihf) echo armv7-unknown-linux-gnueabihf ;;
        aarch64-unknown-linux-gnu) echo aarch64-unknown-linux-gnu ;;
        *)
            echo "unknown build name '$1'; expected one of: ${CROSS_ALL_BUILDS[*]}" >&2
            return 2
            ;;
    esac
}

# cross_is_static NAME: succeeds for the fully static builds.
cross_is_static() {
    case "$1" in
        aarch64-unknown-linux-musl | armv7-unknown-linux-gnueabihf-static) return 0 ;;
        *) return 1 ;;
    esac
}

# cross_gnu_prefix NAME: prints the Debian cross toolchain prefix (aarch64-linux-gnu, ...).
cross_gnu_prefix() {
    case "$(cross_triple "$1")" in
        aarch64-*) echo aarch64-linux-gnu ;;
        armv7-*) echo arm-linux-gnueabihf ;;
    esac
}

# cross_debian_arch NAME: prints the Debian architecture of a build (arm64, armhf).
cross_debian_arch() {
    case "$(cross_triple "$1")" in
        aarch64-*) echo arm64 ;;
        armv7-*) echo armhf ;;
    esac
}

# cross_qemu NAME: prints the qemu-user emulator that runs the build.
cross_qemu() {
    case "$(cross_triple "$1")" in
        aarch64-*) echo qemu-aarch64 ;;
        armv7-*) echo qemu-arm ;;
    esac
}

# cross_sysroot NAME: prints the directory holding the target's shared libraries (the
# Debian cross libc), for `qemu -L`. Static builds need none and print nothing.
cross_sysroot() {
    cross_is_static "$1" || echo "/usr/$(cross_gnu_prefix "$1")"
}

# cross_target_dir NAME: prints the cargo target directory of a build. The static and the
# dynamic armv7 builds share a triple, so the static one gets its own directory. In one
# directory, each would rebuild every crate after the other. With CROSS_GLIBC set (the
# --glibc option), the dynamic builds go to glibc-VERSION/.
cross_target_dir() {
    local base=${CARGO_TARGET_DIR:-$cross_repo_root/target}
    if [[ "$1" == armv7-unknown-linux-gnueabihf-static ]]; then
        echo "$base/crt-static"
    elif [[ -n "${CROSS_GLIBC:-}" ]] && ! cross_is_static "$1"; then
        echo "$base/glibc-$CROSS_GLIBC"
    else
        echo "$base"
    fi
}

# cross_binary NAME: prints the path of the ra-agent binary a build makes.
cross_binary() {
    echo "$(cross_target_dir "$1")/$(cross_triple "$1")/release/ra-agent"
}

# cross_agent_has_feature FEATURE: succeeds when agent/Cargo.toml declares FEATURE.
cross_agent_has_feature() {
    awk -v feature="$1" '
        /^\[/ { in_features = ($0 == "[features]") }
        in_features && $1 == feature && $2 == "=" { found = 1 }
        END { exit !found }
    ' "$cross_repo_root/agent/Cargo.toml"
}

# cross_static_features: prints the feature list of the static builds: every signer that
# needs no dlopen.
cross_static_features() {
    if cross_agent_has_feature tpm; then
        echo file-key,tpm
    else
        echo file-key
    fi
}
