#!/usr/bin/env bash
# Creates a throw-away SoftHSM2 token for the PKCS#11 signer tests.
#
# Usage: tests/softhsm/setup-token.sh DIR
#
# DIR must be empty or missing. The script writes DIR/softhsm2.conf (token directory
# DIR/tokens), initialises one token labelled `ra-test` (user PIN 1234, SO PIN 5678) and
# imports these objects with pkcs11-tool:
#
#   id  private key label  certificate label  what
#   01  rsa-key            rsa-cert           RSA-2048, tests/vectors/pki/rsa/leaf.{key,pem}
#   11  -                  rsa-int            the RSA intermediate CA, for chains read from the token
#   02  ec256              ec256              EC P-256, tests/vectors/pki/ec/leaf.{key,pem}
#   03  ec384              ec384              EC P-384, generated here, issued by the EC intermediate
#   04  rsa-always         rsa-always         RSA-2048 with CKA_ALWAYS_AUTHENTICATE, generated here
#   05  ec-always          ec-always          EC P-256 with CKA_ALWAYS_AUTHENTICATE, generated here
#
# Private keys are imported sensitive and not extractable, and the generated key files are
# deleted after import. The generated certificates stay in DIR as <label>.pem, with
# <label>-chain.pem holding the intermediate that issued them.
#
# The PINs are fixed test values, so passing them on the command line is acceptable here.
set -Eeuo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi

MODULE=${SOFTHSM2_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
LABEL=ra-test
USER_PIN=1234
SO_PIN=5678

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pki=$(cd "$here/../vectors/pki" && pwd)

step="checking arguments"
trap 'echo "setup-token.sh: failed while ${step} (line ${LINENO})" >&2' ERR

mkdir -p "$1"
dir=$(cd "$1" && pwd)
if [[ -n "$(ls -A "$dir")" ]]; then
    echo "setup-token.sh: $dir is not empty; give a new or empty directory" >&2
    exit 2
fi
for tool in softhsm2-util pkcs11-tool openssl; do
    if ! command -v "$tool" >/dev/null; then
        echo "setup-token.sh: $tool not found; install softhsm2, opensc and openssl" >&2
        exit 2
    fi
done
if [[ ! -r "$MODULE" ]]; then
    echo "setup-token.sh: PKCS#11 module $MODULE not found; install softhsm2 or set SOFTHSM2_MODULE" >&2
    exit 2
fi

step="writing $dir/softhsm2.conf"
mkdir "$dir/tokens"
cat >"$dir/softhsm2.conf" <<EOF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
EOF
export SOFTHSM2_CONF="$dir/softhsm2.conf"

step="initialising token $LABEL"
softhsm2-util --init-token --free --label "$LABEL" --pin "$USER_PIN" --so-pin "$SO_PIN" >/dev/null

p11() {
    pkcs11-tool --module "$MODULE" --token-label "$LABEL" --login --pin "$USER_PIN" "$@" >/dev/null
}

# import_key FILE ID LABEL [EXTRA pkcs11-tool OPTIONS...]
import_key() {
    local file=$1 id=$2 label=$3
    shift 3
    step="importing private key $label (id $id) from $file"
    p11 --write-object "$file" --type privkey --id "$id" --label "$label" \
        --usage-sign --sensitive "$@"
}

# import_cert FILE ID LABEL
import_cert() {
    step="importing certificate $3 (id $2) from $1"
    p11 --write-object "$1" --type cert --id "$2" --label "$3"
}

# issue_leaf NAME KEYGEN-OPTIONS CA-CERT CA-KEY: writes DIR/NAME.key and DIR/NAME.pem.
issue_leaf() {
    local name=$1 keyopts=$2 ca_cert=$3 ca_key=$4
    step="generating key $name"
    # shellcheck disable=SC2086 # keyopts is a list of openssl options
    openssl genpkey $keyopts -out "$dir/$name.key" 2>/dev/null
    step="issuing certificate $name"
    cat >"$dir/$name.ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    openssl req -new -key "$dir/$name.key" -subj "/CN=$name-workload/O=Example Test/OU=Workloads" \
        -out "$dir/$name.csr"
    # A random positive serial of 16 bytes. Validity starts now.
    local serial
    serial=$(openssl rand -hex 16 | sed 's/^./4/')
    openssl x509 -req -in "$dir/$name.csr" -CA "$ca_cert" -CAkey "$ca_key" \
        -set_serial "0x$serial" -days 3650 -sha256 -extfile "$dir/$name.ext" \
        -out "$dir/$name.pem" 2>/dev/null
    openssl verify -CAfile "$(dirname "$ca_cert")/root.pem" -untrusted "$ca_cert" "$dir/$name.pem" >/dev/null
    cp "$ca_cert" "$dir/$name-chain.pem"
    rm -f "$dir/$name.csr" "$dir/$name.ext"
}

import_key "$pki/rsa/leaf.key" 01 rsa-key
import_cert "$pki/rsa/leaf.pem" 01 rsa-cert
import_cert "$pki/rsa/int.pem" 11 rsa-int

import_key "$pki/ec/leaf.key" 02 ec256
import_cert "$pki/ec/leaf.pem" 02 ec256

issue_leaf ec384 "-algorithm EC -pkeyopt ec_paramgen_curve:P-384" "$pki/ec/int.pem" "$pki/ec/int.key"
import_key "$dir/ec384.key" 03 ec384
import_cert "$dir/ec384.pem" 03 ec384

issue_leaf rsa-always "-algorithm RSA -pkeyopt rsa_keygen_bits:2048" "$pki/rsa/int.pem" "$pki/rsa/int.key"
import_key "$dir/rsa-always.key" 04 rsa-always --always-auth
import_cert "$dir/rsa-always.pem" 04 rsa-always

issue_leaf ec-always "-algorithm EC -pkeyopt ec_paramgen_curve:P-256" "$pki/ec/int.pem" "$pki/ec/int.key"
import_key "$dir/ec-always.key" 05 ec-always --always-auth
import_cert "$dir/ec-always.pem" 05 ec-always

step="deleting generated private key files"
rm -f "$dir/ec384.key" "$dir/rsa-always.key" "$dir/ec-always.key"

step="listing the token objects"
echo "Token $LABEL in $dir/tokens:"
pkcs11-tool --module "$MODULE" --token-label "$LABEL" --login --pin "$USER_PIN" --list-objects
echo
echo "To use this token:"
echo "export SOFTHSM2_CONF=$dir/softhsm2.conf"
echo "# module: $MODULE, user PIN $USER_PIN, SO PIN $SO_PIN"
