#!/usr/bin/env bash
# Quick start, part 2: install the real servers the tests use (PostgreSQL, restic,
# pgBackRest, Redis, Chromium, moto for S3) if missing, then run every test. Tests start their own servers on
# free ports and remove them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --workspace
