#!/usr/bin/env bash
# Benchmark: rustic_core 0.13's Rabin chunker loop against the lanes chunker of the vendored,
# patched copy (vendor/rustic_core), single thread, on the same data in one run: 256 MiB of
# pg_dump-like text and 256 MiB of random bytes, default chunk sizes (512 KiB–8 MiB), a random
# polynomial, through the iterator (reader in, one Vec per chunk). Three rounds each, old and
# new alternating; the chunk lengths of both are compared on every round. Also the cost of the
# Rabin tables per file (built for every file by 0.13, cached per polynomial by the patch).
#
#   bench/chunker.sh                 # 256 MiB per data set
#   CHUNKER_BENCH_MIB=64 bench/chunker.sh
#
# Builds the vendored crate's release test binary standalone (its own Cargo.lock), in
# $CARGO_TARGET_DIR (default: target/vendor-rustic_core). Prints a Markdown report on stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/vendor-rustic_core}
export CHUNKER_BENCH_MIB=${CHUNKER_BENCH_MIB:-256}
TEST=chunker::rabin_lanes::tests::throughput

cargo test --release --locked --lib --manifest-path "$ROOT/vendor/rustic_core/Cargo.toml" \
  --no-run >&2
out=$(cargo test --release --locked --lib --manifest-path "$ROOT/vendor/rustic_core/Cargo.toml" \
  "$TEST" -- --ignored --exact --nocapture --test-threads=1)
echo "$out" >&2

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo "## Chunker — $(date -u +%Y-%m-%d), $(nproc) cores ($cpu), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(. /etc/os-release; echo "$PRETTY_NAME"), $(rustc --version | cut -d' ' -f1-2)"
echo
echo "| data (${CHUNKER_BENCH_MIB} MiB, best of 3) | rustic_core 0.13 GB/s | lanes GB/s | ratio |"
echo "| --- | ---: | ---: | ---: |"
echo "$out" | awk '/best of 3/ {
  kind = $1; gsub(/[^A-Za-z]/, "", kind)
  for (i = 1; i <= NF; i++) { if ($i == "0.13") old = $(i + 1); if ($i == "lanes") new = $(i + 1); if ($i == "ratio") r = $(i + 1) }
  printf "| %s | %s | %s | %s |\n", (kind == "PgDump" ? "pg_dump-like text" : "random bytes"), old, new, r
}'
echo
# libtest prints `test <name> ... ` in front of the first line of output.
echo "$out" | awk '/tables per file: / { sub(/.*tables per file: /, ""); print "Rabin tables per file: " $0 "." }'
