#!/usr/bin/env bash
# Checks the files in packaging/ against the real agent on this machine.
#
# Usage: packaging/check.sh
#
#   1. `systemd-analyze verify` on ra-agent.service. The unit names /usr/bin/ra-agent,
#      which a build machine does not have, so a copy whose ExecStart names the host
#      build is verified. ra-agent.sysusers is applied to an empty root directory.
#   2. The daemon as the unit runs it: `ra-agent update --config FILE`, with NOTIFY_SOCKET
#      and WATCHDOG_USEC set as systemd sets them. FILE is a copy of config.json whose
#      paths, ARNs and token point at a SoftHSM2 token and the verifying mock on
#      127.0.0.1. It keeps every key of the example, so an unknown key fails here. It must
#      send READY=1 and WATCHDOG=1, write both outputs with the configured modes and
#      group, write the status file that `ra-agent status` reads, reload on SIGHUP and
#      stop with status 0 on SIGTERM.
#   3. Every system call of that run, traced with strace, must be in the unit's
#      SystemCallFilter (@system-service without @resources). This covers the x86_64
#      host build with a PKCS#11 key; other architectures and signers may differ.
#
# Installs systemd (for systemd-analyze), strace, softhsm2, opensc and openssl when missing.
# CARGO_TARGET_DIR is honoured. Prints one line per check and ends with "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

sudo_cmd=()
[[ "$(id -u)" -eq 0 ]] || sudo_cmd=(sudo)
missing=()
for p in systemd strace softhsm2 opensc openssl; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "check.sh: installing ${missing[*]}" >&2
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
command -v python3 >/dev/null || { echo "check.sh: python3 not found; install python3" >&2; exit 2; }

echo "check.sh: building ra-agent and mock-rolesanywhere for the host" >&2
cargo build --release -q -p ra-agent -p mock-rolesanywhere
target=${CARGO_TARGET_DIR:-$root/target}/release
agent=$target/ra-agent

work=$(mktemp -d)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
check() {
    local label=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
        echo "ok   $label"
    else
        failed=$((failed + 1))
        echo "FAIL $label"
    fi
}

# 1. The unit file.
sed "s#/usr/bin/ra-agent#$agent#" packaging/ra-agent.service >"$work/ra-agent.service"
check "systemd-analyze verify ra-agent.service" systemd-analyze verify "$work/ra-agent.service"

sysroot=$work/sysusers-root
mkdir -p "$sysroot/etc"
check_sysusers() {
    systemd-sysusers --root="$sysroot" "$root/packaging/ra-agent.sysusers" >/dev/null 2>&1 &&
        grep -q '^ra-agent:' "$sysroot/etc/passwd" &&
        grep -q '^pos-apps:x:[0-9]*:ra-agent$' "$sysroot/etc/group" &&
        grep -q '^tss:x:[0-9]*:ra-agent$' "$sysroot/etc/group"
}
check "systemd-sysusers creates ra-agent in pos-apps and tss" check_sysusers

# 2. The daemon with the example configuration.
"$target/mock-rolesanywhere" --listen 127.0.0.1:0 >"$work/server.out" 2>"$work/server.log" &
pids+=($!)
for _ in $(seq 100); do
    grep -q '^listening on' "$work/server.out" 2>/dev/null && break
    sleep 0.1
done
endpoint=$(sed -n 's/^listening on //p' "$work/server.out")
[[ -n "$endpoint" ]] || { echo "check.sh: mock-rolesanywhere did not start" >&2; cat "$work/server.log" >&2; exit 1; }

tests/softhsm/setup-token.sh "$work/token" >/dev/null
export SOFTHSM2_CONF="$work/token/softhsm2.conf"
printf '1234\n' >"$work/pin"
chmod 0600 "$work/pin"
mkdir -m 0751 "$work/run"
group=$(id -gn)
python3 - packaging/config.json "$work/config.json" "$work" "$endpoint" "$root" "$group" <<'EOF'
import json, sys
source, dest, work, endpoint, root, group = sys.argv[1:]
config = json.load(open(source))
pin = f"?pin-source={work}/pin"
config["certificate"] = "pkcs11:token=ra-test;object=rsa-cert;type=cert" + pin
config["privateKey"] = "pkcs11:token=ra-test;object=rsa-key;type=private" + pin
config["pkcs11Lib"] = "/usr/lib/softhsm/libsofthsm2.so"
prefix = "arn:aws:rolesanywhere:us-east-1:123456789012:"
config["trustAnchorArn"] = prefix + "trust-anchor/11111111-2222-3333-4444-555555555555"
config["profileArn"] = prefix + "profile/66666666-7777-8888-9999-000000000000"
config["roleArn"] = "arn:aws:iam::123456789012:role/ExampleRole"
config["statusFile"] = config["statusFile"].replace("/run/ra-agent", f"{work}/run")
for output in config["outputs"]:
    output["path"] = output["path"].replace("/run/ra-agent", f"{work}/run")
    if "group" in output:
        output["group"] = group
config["endpoint"] = endpoint
config["caBundle"] = f"{root}/tests/vectors/pki/tls/ca.pem"
json.dump(config, open(dest, "w"), indent=2)
EOF

# A datagram socket in place of systemd's: it records every notification it receives.
python3 - "$work/notify.sock" "$work/notify.log" <<'EOF' &
import socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sys.argv[1])
with open(sys.argv[2], "a", buffering=1) as log:
    while True:
        log.write(sock.recv(4096).decode() + "\n")
EOF
pids+=($!)
for _ in $(seq 50); do
    [[ -S "$work/notify.sock" ]] && break
    sleep 0.1
done

# wait_for PATTERN FILE SECONDS: waits until FILE has a line matching PATTERN.
wait_for() {
    local _
    for _ in $(seq $(($3 * 10))); do
        grep -q "$1" "$2" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

NOTIFY_SOCKET=$work/notify.sock WATCHDOG_USEC=2000000 \
    strace -f -qq -o "$work/trace" "$agent" update --config "$work/config.json" 2>"$work/agent.log" &
tracer=$!
pids+=("$tracer")
# Signals go to the agent, the child of strace; strace exits with the agent's status.
daemon=
for _ in $(seq 50); do
    daemon=$(pgrep -P "$tracer" || true)
    [[ -z "$daemon" ]] || break
    sleep 0.1
done
[[ -n "$daemon" ]] || { echo "check.sh: ra-agent did not start under strace" >&2; exit 1; }
pids+=("$daemon")
check "daemon sends READY=1" wait_for '^READY=1' "$work/notify.log" 60
check "daemon sends WATCHDOG=1 (WATCHDOG_USEC=2 s)" wait_for '^WATCHDOG=1' "$work/notify.log" 5

out=$work/run
check "credentials file has mode 640 and group $group" \
    test "$(stat -c '%a %G' "$out/credentials" 2>/dev/null)" = "640 $group"
check "credentials file has a [default] profile" grep -q '^\[default\]' "$out/credentials"
check "JSON file has mode 600" test "$(stat -c '%a' "$out/credentials.json" 2>/dev/null)" = 600
check "JSON file has an AccessKeyId" grep -q '"AccessKeyId"' "$out/credentials.json"
check "status file has mode 640" test "$(stat -c '%a' "$out/status.json" 2>/dev/null)" = 640
status_reads() {
    "$agent" status --config "$work/config.json" >"$work/status.out" 2>&1
}
check "ra-agent status reads the status file" status_reads

kill -HUP "$daemon"
check "daemon sends RELOADING=1 on SIGHUP" wait_for '^RELOADING=1' "$work/notify.log" 10
kill -TERM "$daemon"
status=0
wait "$tracer" || status=$?
check "daemon exits 0 on SIGTERM" test "$status" -eq 0
check "daemon sends STOPPING=1" grep -q '^STOPPING=1' "$work/notify.log"
if [[ $failed -gt 0 ]]; then
    sed 's/^/     | /' "$work/agent.log" | tail -n 20
fi

# 3. System calls against the unit's filter.
filter_violations() {
    systemd-analyze syscall-filter >"$work/groups"
    python3 - "$work/groups" "$work/trace" <<'EOF'
import re, sys
groups, current = {}, None
for line in open(sys.argv[1]):
    text = line.strip()
    if not text or text.startswith("#"):
        continue
    if not line.startswith(" "):
        current = groups.setdefault(text, [])
    elif current is not None:
        current.append(text)

def expand(name, seen=()):
    if not name.startswith("@"):
        return {name}
    result = set()
    for entry in groups.get(name, []):
        if entry not in seen:
            result |= expand(entry, seen + (name,))
    return result

allowed = expand("@system-service") - expand("@resources")
used = set()
for line in open(sys.argv[2]):
    match = re.match(r"\d+\s+([a-z0-9_]+)\(", line)
    if match:
        used.add(match.group(1))
outside = sorted(used - allowed)
print(f"{len(used)} distinct system calls traced", file=sys.stderr)
if outside:
    print("outside the filter: " + " ".join(outside), file=sys.stderr)
    sys.exit(1)
EOF
}
check "system calls within @system-service without @resources" filter_violations

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
