#!/usr/bin/env bash
# Regenerates BENCHMARKS.md: binary sizes, peak RSS and wall time of one
# credential-process for ra-agent and its peers, the idle cost of `update`, and the
# agent's own work per refresh next to the signer's. Everything runs in one go on this
# machine; the numbers are medians.
#
# Usage: bench/run.sh [RUNS]      (RUNS: credential-process runs per client, default 21)
#
# What it does:
#   1. builds the four cross builds (cross/build.sh), the x86_64 build with three feature
#      sets and the static aarch64 build without tpm, and records their stripped sizes;
#   2. serves the verifying mock on 127.0.0.1:443 with a throw-away TLS certificate for
#      rolesanywhere.us-east-1.amazonaws.com. Inside a private mount namespace
#      (`unshare -m`) a bind-mounted /etc/hosts points that name at 127.0.0.1, so
#      needroleshere, which has no endpoint option, reaches the mock. The other clients run
#      in the same namespace against the same name, so all three pay the same lookup and
#      TLS handshake. Nothing leaves the machine;
#   3. bench/measure.py runs each client RUNS times, then `ra-agent update` idle for
#      IDLE_SECONDS (default 20), then bench/refresh-cost, and writes BENCHMARKS.md.
#
# Installs what is missing: Debian's time, strace, softhsm2, opensc and openssl, the
# needroleshere crate (cargo install) and iam-rolesanywhere-session (pip). Needs root for
# the mount namespace and port 443. CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
runs=${1:-21}
idle_seconds=${IDLE_SECONDS:-20}
target_base=${CARGO_TARGET_DIR:-$root/target}

if [[ "$(id -u)" -ne 0 ]]; then
    echo "run.sh: needs root for unshare -m and port 443; run it with sudo" >&2
    exit 2
fi
missing=()
for p in time strace softhsm2 opensc openssl; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
command -v needroleshere >/dev/null || cargo install --locked needroleshere >&2
python3 -c 'import iam_rolesanywhere_session' 2>/dev/null ||
    python3 -m pip install --quiet iam-rolesanywhere-session >&2

work=$(mktemp -d)
shm=$(mktemp -d -p /dev/shm ra-bench.XXXXXX)
server_pid=
cleanup() {
    [[ -z "$server_pid" ]] || kill "$server_pid" 2>/dev/null || true
    rm -rf "$work" "$shm"
}
trap cleanup EXIT

# 1. Builds. Each feature set of the host build gets its own target directory, so no
# build invalidates another.
echo "run.sh: building" >&2
cross/build.sh >"$work/cross-binaries"
# shellcheck source=cross/targets.sh
source cross/targets.sh
sizes=$work/sizes.tsv
: >"$sizes"
for build in "${CROSS_ALL_BUILDS[@]}"; do
    features=default
    if cross_is_static "$build"; then
        features=$(cross_static_features)
    fi
    printf '%s\t%s\t%s\n' "$build" "$features" "$(stat -c %s "$(cross_binary "$build")")" >>"$sizes"
done
host_build() {
    local name=$1
    shift
    CARGO_TARGET_DIR="$target_base/bench-$name" cargo build --release -q -p ra-agent "$@" >&2
    echo "$target_base/bench-$name/release/ra-agent"
}
agent=$(host_build default)
printf 'x86_64-unknown-linux-gnu\tdefault\t%s\n' "$(stat -c %s "$agent")" >>"$sizes"
binary=$(host_build file-key --no-default-features --features file-key)
printf 'x86_64-unknown-linux-gnu\tfile-key\t%s\n' "$(stat -c %s "$binary")" >>"$sizes"
if cross_agent_has_feature tpm; then
    binary=$(host_build file-key-tpm --no-default-features --features file-key,tpm)
    printf 'x86_64-unknown-linux-gnu\tfile-key,tpm\t%s\n' "$(stat -c %s "$binary")" >>"$sizes"
    # The budgeted static aarch64 build without tpm, to show what tpm costs there.
    CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc \
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc \
        CARGO_TARGET_DIR="$target_base/bench-file-key" cargo build --release -q -p ra-agent \
        --target aarch64-unknown-linux-musl --no-default-features --features file-key >&2
    printf 'aarch64-unknown-linux-musl\tfile-key\t%s\n' \
        "$(stat -c %s "$target_base/bench-file-key/aarch64-unknown-linux-musl/release/ra-agent")" >>"$sizes"
fi
# Where the bytes of the budgeted build go: crates (.text) and ELF sections.
command -v cargo-bloat >/dev/null || cargo install --locked cargo-bloat >&2
CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc \
    CARGO_PROFILE_RELEASE_STRIP=false CARGO_TARGET_DIR="$target_base/bench-bloat" \
    cargo bloat --release -p ra-agent --target aarch64-unknown-linux-musl \
    --no-default-features --features "$(cross_static_features)" --crates -n 16 \
    2>/dev/null | grep -v '^Note:\|^$\|are a result of guesswork' >"$work/bloat.txt"
aarch64-linux-gnu-size -A "$(cross_binary aarch64-unknown-linux-musl)" |
    sed -n '/^section/,$p' | grep -v '^$' >"$work/sections.txt"

# The x86_64 twin of the static device builds, for memory and time on this machine.
rustup target list --installed | grep -qx x86_64-unknown-linux-musl ||
    rustup target add x86_64-unknown-linux-musl >&2
CC_x86_64_unknown_linux_musl=gcc CARGO_TARGET_DIR="$target_base/bench-musl" \
    cargo build --release -q -p ra-agent --target x86_64-unknown-linux-musl \
    --no-default-features --features "$(cross_static_features)" >&2
agent_static=$target_base/bench-musl/x86_64-unknown-linux-musl/release/ra-agent
printf 'x86_64-unknown-linux-musl\t%s\t%s\n' "$(cross_static_features)" \
    "$(stat -c %s "$agent_static")" >>"$sizes"

cargo build --release -q -p mock-rolesanywhere >&2
(cd bench/refresh-cost && CARGO_TARGET_DIR="$target_base/bench-refresh-cost" cargo build --release -q >&2)

# 2. The endpoint under the service's own name, on loopback.
host=rolesanywhere.us-east-1.amazonaws.com
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=ra-agent-bench-ca -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$host" \
    -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n' "$host" >"$work/server.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -set_serial 1 -days 2 -extfile "$work/server.ext" -out "$work/server.pem" 2>/dev/null
printf '127.0.0.1 localhost\n127.0.0.1 %s\n' "$host" >"$work/hosts"

"$target_base/release/mock-rolesanywhere" --listen 127.0.0.1:443 \
    --tls-cert "$work/server.pem" --tls-key "$work/server.key" \
    >"$work/server.out" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do
    grep -q '^listening on' "$work/server.out" 2>/dev/null && break
    sleep 0.1
done
if ! grep -q '^listening on' "$work/server.out"; then
    echo "run.sh: mock-rolesanywhere could not listen on 127.0.0.1:443:" >&2
    cat "$work/server.log" >&2
    exit 1
fi

tests/softhsm/setup-token.sh "$shm/token" >/dev/null
printf '1234\n' >"$shm/pin"
chmod 0600 "$shm/pin"
mkdir "$shm/out" "$work/out"

# 3. Measurements, inside the namespace that resolves the service name to 127.0.0.1.
echo "run.sh: measuring" >&2
# shellcheck disable=SC2016 # $1 and $@ belong to the inner sh
unshare -m --propagation private sh -c 'mount --bind "$1" /etc/hosts && shift && exec "$@"' sh \
    "$work/hosts" python3 bench/measure.py \
    --runs "$runs" --idle-seconds "$idle_seconds" --sizes "$sizes" \
    --agent "$agent" --agent-static "$agent_static" --ca "$work/ca.pem" --token-dir "$shm" \
    --refresh-cost "$target_base/bench-refresh-cost/release/refresh-cost" \
    --output-dirs "$shm/out" "$work/out" \
    --report BENCHMARKS.md
echo "run.sh: wrote BENCHMARKS.md" >&2
