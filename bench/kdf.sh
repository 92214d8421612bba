#!/usr/bin/env bash
# Benchmark: the key derivation's ROMix (scrypt, N = 2^17, r = 8, p = 1: the parameters
# lifeboat's keys use) with V allocated as scrypt 0.12.0 does (a zeroed Vec, faulted in page by
# page by the loop) against the vendored, patched copy (vendor/scrypt: a mapping made present
# ahead of the loop by a helper thread), alternating in one run, single thread; the results are
# compared every round. Twice: on an idle machine, and with every other core kept busy (as a
# bucket listing and the S3 server keep them while `lifeboat backup` derives its key).
#
#   bench/kdf.sh                     # 9 rounds each
#   KDF_BENCH_ROUNDS=15 bench/kdf.sh
#
# Builds the vendored crate's release test binary standalone (its own Cargo.lock), in
# $CARGO_TARGET_DIR (default: target/vendor-scrypt). Prints a Markdown report on stdout.
source "$(dirname "$0")/lib.sh"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/vendor-scrypt}
export KDF_BENCH_ROUNDS=${KDF_BENCH_ROUNDS:-9}
TEST=populated::lifeboat_patch_tests::lifeboat_patch_timing
MANIFEST=$ROOT/vendor/scrypt/Cargo.toml

cargo test --release --locked --lib --manifest-path "$MANIFEST" --no-run >&2
run() {
  cargo test --release --locked --lib --manifest-path "$MANIFEST" "$TEST" -- --ignored --exact \
    --nocapture --test-threads=1
}

idle=$(run)
echo "$idle" >&2
busy_pids=()
for _ in $(seq $(($(nproc) - 1))); do
  (while :; do :; done) &
  busy_pids+=($!)
done
trap 'kill "${busy_pids[@]}" 2>/dev/null || true' EXIT
busy=$(run)
kill "${busy_pids[@]}" 2>/dev/null || true
echo "$busy" >&2

thp=$(sed 's/.*\[\(.*\)\].*/\1/' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo '?')
echo "## Key derivation — $(date -u +%Y-%m-%d), $(machine), Linux $(uname -r), huge pages: $thp"
echo
echo "| ROMix N=2^17 r=8 p=1, median of ${KDF_BENCH_ROUNDS} (best) | scrypt 0.12.0 s | patched s | ratio |"
echo "| --- | ---: | ---: | ---: |"
row() {
  echo "$2" | awk -v what="$1" '/median of/ {
    for (i = 1; i <= NF; i++) {
      if ($i == "vec") { old = $(i + 1); oldb = $(i + 4) }
      if ($i == "mapped") { new = $(i + 1); newb = $(i + 4) }
      if ($i == "ratio") r = $(i + 1)
    }
    gsub(/[(),]/, "", oldb); gsub(/[(),]/, "", newb)
    printf "| %s | %s (%s) | %s (%s) | %s |\n", what, old, oldb, new, newb, r
  }'
}
row "idle machine" "$idle"
row "other cores busy" "$busy"
