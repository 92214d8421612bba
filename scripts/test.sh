#!/usr/bin/env bash
# Quick start, part 2: install the real servers the tests use (PostgreSQL, restic,
# pgBackRest, Redis, Chromium, moto for S3) if missing, then run every test. Tests start their own servers on
# free ports and remove them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# A full debug build takes about 4 GiB; say so plainly rather than die in the linker.
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "$free_kib" -lt $((5 * 1024 * 1024)) ]; then
  echo "warning: only $((free_kib / 1024)) MiB free here; the build needs about 4 GiB" >&2
fi
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --workspace
# The patched rustic_core (vendor/README.md): its chunker against 0.13's own loop, and the
# cache's concurrent writers. It builds alone, with its own Cargo.lock and target folder.
CARGO_TARGET_DIR=target/vendor-rustic_core \
  cargo test --locked --lib --manifest-path vendor/rustic_core/Cargo.toml -- \
  chunker lifeboat_patch_
# The patched scrypt (vendor/README.md): the RFC 7914 vectors through its new path, ROMix the
# same both ways, V made present by the helper. Own Cargo.lock and target folder too.
CARGO_TARGET_DIR=target/vendor-scrypt \
  cargo test --locked --manifest-path vendor/scrypt/Cargo.toml
