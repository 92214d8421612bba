#!/usr/bin/env bash
# Quick start, part 1: install PostgreSQL if missing, build lifeboat, run `lifeboat demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --locked -p lifeboat
exec target/release/lifeboat demo "$@"
