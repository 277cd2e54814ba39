#!/usr/bin/env bash
# Runs the cross-built ra-agent binaries under qemu-user against the verifying
# CreateSession mock on 127.0.0.1.
#
# Usage: cross/smoke.sh [--glibc VERSION] [BUILD...]
#
# BUILD and --glibc are as in cross/build.sh (default: all four builds). Run
# cross/build.sh first with the same options and CARGO_TARGET_DIR. For every build:
#   - `ra-agent version` prints the workspace version;
#   - `credential-process` with the RSA and the EC P-256 test keys from PEM files returns
#     credentials that the mock issued after verifying chain and signature. The EC run
#     names the endpoint `localhost`, so the libc resolver (static glibc too) is used;
#   - with the agent's tpm feature, `credential-process` signs with an RSA key persistent
#     in swtpm (Unix socket), made with tpm2-tools;
#   - the static builds reject a pkcs11: URI with exit status 2 and a message that names
#     a dynamically linked build as the fix.
# The two glibc builds also sign with keys in a SoftHSM2 token: the arm64 or armhf
# SoftHSM2 and its libraries are unpacked from Debian packages (`apt-get download`,
# `dpkg -x`) into a private sysroot under CARGO_TARGET_DIR that only `qemu -L` sees, so
# the native SoftHSM2 stays installed. The token is created by the native tools
# (tests/softhsm/setup-token.sh).
#
# binfmt_misc is not needed: qemu-aarch64 and qemu-arm (Debian qemu-user) are called
# directly. Prints one line per check and ends with "N passed, N failed".
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
            [[ $# -ge 2 ]] || { echo "smoke.sh: --glibc needs a version, such as 2.28" >&2; exit 2; }
            CROSS_GLIBC=$2
            shift 2
            ;;
        --glibc=*)
            CROSS_GLIBC=${1#--glibc=}
            shift
            ;;
        -*)
            echo "smoke.sh: unknown option '$1'; see the header of cross/smoke.sh" >&2
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

sudo_cmd=()
[[ "$(id -u)" -eq 0 ]] || sudo_cmd=(sudo)
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [[ ${#missing[@]} -gt 0 ]] || return 0
    echo "smoke.sh: installing ${missing[*]}" >&2
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
apt_install qemu-user softhsm2 opensc openssl swtpm swtpm-tools tpm2-tools

target_base=${CARGO_TARGET_DIR:-$cross_repo_root/target}
pki=tests/vectors/pki
# The mock's test PKI has one trust anchor per key type (tests/mock-rolesanywhere/src/config.rs).
rsa_anchor=arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/11111111-2222-3333-4444-555555555555
ec_anchor=arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/22222222-3333-4444-5555-666666666666
profile=arn:aws:rolesanywhere:us-east-1:123456789012:profile/66666666-7777-8888-9999-000000000000
role=arn:aws:iam::123456789012:role/ExampleRole
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)

work=$(mktemp -d)
server_pid=
swtpm_pid=
token_parent=
cleanup() {
    [[ -z "$server_pid" ]] || kill "$server_pid" 2>/dev/null || true
    [[ -z "$swtpm_pid" ]] || kill "$swtpm_pid" 2>/dev/null || true
    rm -rf "$work"
    [[ -z "$token_parent" ]] || rm -rf "$token_parent"
}
trap cleanup EXIT

passed=0
failed=0
pass() {
    passed=$((passed + 1))
    echo "ok   $1"
}
fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
    sed 's/^/     | /' "$work/out" "$work/err" | tail -n 20
}

echo "smoke.sh: building mock-rolesanywhere for the host" >&2
cargo build --release -q -p mock-rolesanywhere
"$target_base/release/mock-rolesanywhere" --listen 127.0.0.1:0 >"$work/server.out" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do
    grep -q '^listening on' "$work/server.out" 2>/dev/null && break
    sleep 0.1
done
endpoint=$(sed -n 's/^listening on //p' "$work/server.out")
if [[ -z "$endpoint" ]]; then
    echo "smoke.sh: mock-rolesanywhere did not start:" >&2
    cat "$work/server.log" >&2
    exit 1
fi
echo "smoke.sh: endpoint $endpoint" >&2

# agent NAME SYSROOT ARGS...: runs ra-agent of a build under qemu, output in $work/out and
# $work/err, and returns its exit status. SYSROOT may be empty (static builds).
agent() {
    local build=$1 sysroot=$2
    shift 2
    local qemu=("$(cross_qemu "$build")")
    [[ -z "$sysroot" ]] || qemu+=(-L "$sysroot")
    timeout 300 "${qemu[@]}" "$(cross_binary "$build")" "$@" >"$work/out" 2>"$work/err"
}

service=(--profile-arn "$profile" --role-arn "$role" --ca-bundle "$pki/tls/ca.pem")
# The mock's TLS certificate names both 127.0.0.1 and localhost.
localhost_endpoint=${endpoint/127.0.0.1/localhost}

# check_credentials LABEL: passes when $work/out is a credential_process document.
check_credentials() {
    local field missing=()
    for field in '"Version":1' '"AccessKeyId":"' '"SecretAccessKey":"' '"SessionToken":"' '"Expiration":"'; do
        tr -d ' \n' <"$work/out" | grep -qF "$field" || missing+=("$field")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        pass "$1"
    else
        echo "     missing ${missing[*]}" >"$work/err"
        fail "$1"
    fi
}

# credential_process LABEL BUILD SYSROOT TRUST-ANCHOR ENDPOINT ARGS...: one
# credential-process that must succeed.
credential_process() {
    local label=$1 build=$2 sysroot=$3 anchor=$4 url=$5
    shift 5
    if agent "$build" "$sysroot" credential-process "$@" \
        --trust-anchor-arn "$anchor" --endpoint "$url" "${service[@]}"; then
        check_credentials "$label"
    else
        fail "$label (exit status $?)"
    fi
}

# softhsm_sysroot ARCH: prints a directory holding libc and SoftHSM2 of Debian
# architecture ARCH, unpacked from the Debian packages, creating it on first use.
softhsm_sysroot() {
    local arch=$1 dir="$target_base/cross-sysroot/softhsm2-$1"
    local packages=("libsofthsm2:$arch" "libc6:$arch" "libgcc-s1:$arch" "libssl3:$arch" "libstdc++6:$arch")
    if [[ ! -e "$dir/.complete" ]]; then
        echo "smoke.sh: unpacking ${packages[*]} into $dir" >&2
        if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
            # Lets apt see the package lists of ARCH; nothing of ARCH is installed.
            "${sudo_cmd[@]}" dpkg --add-architecture "$arch"
            "${sudo_cmd[@]}" apt-get update -qq
        fi
        rm -rf "$dir"
        mkdir -p "$dir/debs"
        # apt drops privileges to _apt for the download, which needs to write here.
        chmod 0777 "$dir/debs"
        (cd "$dir/debs" && apt-get download -qq "${packages[@]}" >&2)
        local deb
        for deb in "$dir"/debs/*.deb; do
            dpkg -x "$deb" "$dir"
        done
        touch "$dir/.complete"
    fi
    echo "$dir"
}

# start_swtpm: starts swtpm on a Unix socket with an RSA-2048 key persistent at
# 0x81000101 (made with tpm2-tools) and writes $work/tpm/cert.pem, a certificate for it
# from the RSA test intermediate.
start_swtpm() {
    local dir=$work/tpm
    mkdir -p "$dir/state"
    swtpm socket --tpm2 --flags not-need-init,startup-clear --tpmstate "dir=$dir/state" \
        --server "type=unixio,path=$dir/tpm.sock" --ctrl "type=unixio,path=$dir/tpm.sock.ctrl" \
        >"$dir/swtpm.log" 2>&1 &
    swtpm_pid=$!
    local _
    for _ in $(seq 100); do
        [[ -S "$dir/tpm.sock" ]] && break
        sleep 0.05
    done
    # swtpm has no resource manager, so every tool's leftovers are flushed after it.
    tool() {
        TPM2TOOLS_TCTI="swtpm:path=$dir/tpm.sock" "$@" >/dev/null
        TPM2TOOLS_TCTI="swtpm:path=$dir/tpm.sock" tpm2_flushcontext -t >/dev/null
        TPM2TOOLS_TCTI="swtpm:path=$dir/tpm.sock" tpm2_flushcontext -s >/dev/null
    }
    (
        cd "$dir"
        tool tpm2_createprimary -Q -C o -g sha256 -G ecc -c primary.ctx
        tool tpm2_create -Q -C primary.ctx -G rsa2048 -u key.pub -r key.priv
        tool tpm2_load -Q -C primary.ctx -u key.pub -r key.priv -c key.ctx
        tool tpm2_evictcontrol -Q -C o -c key.ctx 0x81000101
        tool tpm2_readpublic -Q -c 0x81000101 -f pem -o key.pem
    )
    printf 'keyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n' >"$dir/ext.cnf"
    openssl x509 -new -subj "/CN=tpm-smoke/O=Example Test" -force_pubkey "$dir/key.pem" \
        -CA "$pki/rsa/int.pem" -CAkey "$pki/rsa/int.key" -days 2 -extfile "$dir/ext.cnf" \
        -out "$dir/cert.pem" 2>/dev/null
}
tpm=
if cross_agent_has_feature tpm; then
    start_swtpm
    tpm=1
fi

for build in "${builds[@]}"; do
    binary=$(cross_binary "$build")
    if [[ ! -x "$binary" ]]; then
        echo "FAIL $build: $binary not found; run cross/build.sh $build first"
        failed=$((failed + 1))
        continue
    fi
    sysroot=$(cross_sysroot "$build")

    if agent "$build" "$sysroot" version && [[ "$(cat "$work/out")" == "ra-agent $version" ]]; then
        pass "$build: version"
    else
        fail "$build: version (expected 'ra-agent $version')"
    fi

    credential_process "$build: credential-process, RSA file key" "$build" "$sysroot" "$rsa_anchor" "$endpoint" \
        --certificate "$pki/rsa/leaf.pem" --private-key "$pki/rsa/leaf.key" \
        --intermediates "$pki/rsa/chain.pem"
    credential_process "$build: credential-process, EC P-256 file key, localhost" \
        "$build" "$sysroot" "$ec_anchor" "$localhost_endpoint" \
        --certificate "$pki/ec/leaf.pem" --private-key "$pki/ec/leaf.key" \
        --intermediates "$pki/ec/chain.pem"

    if [[ -n "$tpm" ]]; then
        credential_process "$build: credential-process, RSA key in swtpm" \
            "$build" "$sysroot" "$rsa_anchor" "$endpoint" \
            --certificate "$work/tpm/cert.pem" --intermediates "$pki/rsa/chain.pem" \
            --private-key handle:0x81000101 --tpm-device "unix:$work/tpm/tpm.sock"
    fi

    if cross_is_static "$build"; then
        label="$build: pkcs11: URI rejected with a clear message"
        status=0
        agent "$build" "" credential-process \
            --certificate 'pkcs11:token=ra-test;object=rsa-cert;type=cert' \
            --endpoint "$endpoint" --trust-anchor-arn "$rsa_anchor" "${service[@]}" || status=$?
        if [[ $status -eq 2 ]] && grep -q 'dynamically linked build' "$work/err"; then
            pass "$label"
        else
            fail "$label (exit status $status, expected 2 and 'dynamically linked build')"
        fi
    fi
done

# PKCS#11 under emulation: the glibc builds with SoftHSM2 of their own architecture, on
# one token written by the native x86_64 SoftHSM2 (its file format reads the same on the
# 32-bit armhf build). The token lives on tmpfs: on ext4, directory offsets are 64-bit
# hashes that a 32-bit guest under qemu-user cannot take (getdents fails with EOVERFLOW),
# so armhf SoftHSM2 would see an empty token directory. A device's kernel returns 32-bit
# offsets to 32-bit programs, so there the token may live anywhere.
pkcs11_builds=()
for build in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
    if printf '%s\n' "${builds[@]}" | grep -qx "$build"; then
        pkcs11_builds+=("$build")
    fi
done
if [[ ${#pkcs11_builds[@]} -gt 0 ]]; then
    token_parent=$(mktemp -d -p /dev/shm ra-smoke.XXXXXX)
    tests/softhsm/setup-token.sh "$token_parent/token" >/dev/null
    export SOFTHSM2_CONF="$token_parent/token/softhsm2.conf"
    printf '1234\n' >"$work/pin"
    chmod 0600 "$work/pin"
fi
for build in "${pkcs11_builds[@]}"; do
    softhsm_root=$(softhsm_sysroot "$(cross_debian_arch "$build")")
    # This path exists only in the sysroot, so the x86_64 module is never picked up.
    module="/usr/lib/$(cross_gnu_prefix "$build")/softhsm/libsofthsm2.so"
    credential_process "$build: credential-process, RSA key in SoftHSM2" \
        "$build" "$softhsm_root" "$rsa_anchor" "$endpoint" \
        --certificate "pkcs11:token=ra-test;object=rsa-cert;type=cert?pin-source=$work/pin" \
        --pkcs11-lib "$module"
    # The token contains the RSA intermediate but not the EC one, which comes from a file.
    credential_process "$build: credential-process, EC P-256 key in SoftHSM2" \
        "$build" "$softhsm_root" "$ec_anchor" "$endpoint" \
        --certificate "pkcs11:token=ra-test;object=ec256;type=cert?pin-source=$work/pin" \
        --intermediates "$pki/ec/chain.pem" --pkcs11-lib "$module"
done

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
