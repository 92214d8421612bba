#!/usr/bin/env bash
# Benchmark: a piped stream into the repository (rustic_core pitfall 1: without lifeboat's
# full-read wrapper a pipe collapses to ~4 MB/s). 500 MB of random and of text-like data,
# piped through `cat`, into lifeboat's repository code and into `restic backup --stdin`.
#
#   bench/stream.sh            # SIZE_MB=500
source "$(dirname "$0")/lib.sh"
SIZE_MB=${SIZE_MB:-500}
WORK=${WORK:-/tmp/lifeboat-bench-stream}
rm -rf "$WORK"; mkdir -p "$WORK"
trap remove_work EXIT
cargo build --release --locked -p lifeboat-repo --example stream_throughput --manifest-path "$ROOT/Cargo.toml" >&2
EX="$ROOT/target/release/examples/stream_throughput"
head -c "${SIZE_MB}M" /dev/urandom > "$WORK/random"
# Text-like: a dictionary shuffled into lines; compresses about ×3 like real dumps.
python3 - "$WORK/text" "$SIZE_MB" <<'PY'
import random, sys
random.seed(42)
words = open('/usr/share/dict/words').read().split() if __import__('os').path.exists('/usr/share/dict/words') else [f"w{i:05x}" for i in range(20000)]
target = int(sys.argv[2]) << 20
with open(sys.argv[1], 'w') as f:
    n = 0
    while n < target:
        line = f"{random.randint(1, 10**9)}\t{' '.join(random.choices(words, k=12))}\t2026-11-{random.randint(1,28):02d}\n"
        f.write(line); n += len(line)
PY
echo "## Piped stream into the repository — $(date -u +%Y-%m-%d), $(machine)"
echo
echo "| input ($SIZE_MB MB, piped through cat) | lifeboat MB/s | restic --stdin MB/s | ratio |"
echo "| --- | ---: | ---: | ---: |"
for kind in random text; do
  cat "$WORK/$kind" > /dev/null  # page cache
  read -r _ _ lb < <(cat "$WORK/$kind" | "$EX")
  export RESTIC_PASSWORD=bench RESTIC_REPOSITORY="$WORK/restic-$kind"
  restic init -q >/dev/null
  s=$(now); cat "$WORK/$kind" | restic backup -q --stdin --stdin-filename x >/dev/null; t=$(elapsed "$s")
  rs=$(awk -v b="$(stat -c %s "$WORK/$kind")" -v t="$t" 'BEGIN { printf "%.1f", b / t / 1e6 }')
  echo "| $kind | $lb | $rs | $(ratio "$lb" "$rs") |"
done
