#!/usr/bin/env bash
# The project's test command: formatting, lints, and every test, including the SoftHSM2,
# swtpm and end-to-end suites. Installs the Debian packages they need when missing.
set -euo pipefail
cd "$(dirname "$0")"

scripts/install-deps.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
