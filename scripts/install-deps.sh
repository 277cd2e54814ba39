#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo use, when any is missing:
# SoftHSM2 and OpenSC for the PKCS#11 token, swtpm and tpm2 tools for the TPM signer.
set -euo pipefail

packages=(softhsm2 opensc openssl swtpm swtpm-tools tpm2-tools tpm2-openssl p11-kit)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "installing: ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd=(sudo)
fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
