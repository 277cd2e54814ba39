#!/usr/bin/env bash
# A demo on one machine: a SoftHSM2 token holding an RSA key and its certificate, a
# verifying CreateSession endpoint on 127.0.0.1 with a test CA, and `ra-agent update --once`
# writing a credentials file with the key that never leaves the token.
# Everything lives in a temporary directory that is removed at exit.
set -euo pipefail
cd "$(dirname "$0")"
root=$(pwd)

scripts/install-deps.sh
echo "== building (release)"
cargo build --release -q -p ra-agent -p mock-rolesanywhere

work=$(mktemp -d)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== creating a SoftHSM2 token with the test PKI"
tests/softhsm/setup-token.sh "$work/token" >/dev/null
export SOFTHSM2_CONF="$work/token/softhsm2.conf"
printf '1234\n' > "$work/pin"
chmod 600 "$work/pin"

echo "== starting the verifying endpoint on 127.0.0.1"
target/release/mock-rolesanywhere --listen 127.0.0.1:0 > "$work/server.out" 2> "$work/server.log" &
server_pid=$!
for _ in $(seq 50); do
    grep -q '^listening on' "$work/server.out" 2>/dev/null && break
    sleep 0.1
done
endpoint=$(sed -n 's/^listening on //p' "$work/server.out")
echo "   $endpoint"

export AWS_SHARED_CREDENTIALS_FILE="$work/aws/credentials"
uri='pkcs11:token=ra-test;object=rsa-cert'
echo "== ra-agent update --once --certificate '$uri;type=cert?pin-source=...'"
target/release/ra-agent update --once \
    --certificate "$uri;type=cert?pin-source=$work/pin" \
    --private-key "pkcs11:token=ra-test;id=%01;type=private?pin-source=$work/pin" \
    --pkcs11-lib /usr/lib/softhsm/libsofthsm2.so \
    --trust-anchor-arn arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/11111111-2222-3333-4444-555555555555 \
    --profile-arn arn:aws:rolesanywhere:us-east-1:123456789012:profile/66666666-7777-8888-9999-000000000000 \
    --role-arn arn:aws:iam::123456789012:role/ExampleRole \
    --endpoint "$endpoint" \
    --ca-bundle "$root/tests/vectors/pki/tls/ca.pem"

echo "== $AWS_SHARED_CREDENTIALS_FILE (mode $(stat -c %a "$AWS_SHARED_CREDENTIALS_FILE"), secrets masked)"
sed -E 's/^(aws_secret_access_key|aws_session_token) = (.{4}).*/\1 = \2.../' "$AWS_SHARED_CREDENTIALS_FILE"
