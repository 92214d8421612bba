#!/usr/bin/env bash
# Benchmark (issue 24, point 3): many small files. A folder of FILES small files (default
# 10,000; 1–16 KiB, log-uniform; about 70% text-like — source, config, JSON and log lines —
# and 30% random bytes; in nested folders, 16 × 25 folders with a third of the files one
# level deeper), made reproducibly from SEED. Then ROUNDS rounds (default 3), each with a
# fresh lifeboat repository and a fresh restic repository on the same local disk:
#
#   first:        `lifeboat backup files` (a files target of that folder) and
#                 `restic backup <folder>`;
#   incremental:  CHANGED_PCT% of the files (default 1%, chosen from SEED and the round)
#                 rewritten with new content, then both again (each finds its parent
#                 snapshot itself: lifeboat the target's previous snapshot, restic the
#                 snapshot of the same host and path).
#
# The order alternates (odd rounds lifeboat first). Every command is timed with
# /usr/bin/time: wall seconds and CPU seconds (user + system of the process and the children
# it waited for); `sync` before each. Medians over the rounds and the ratio lifeboat ÷ restic,
# first and incremental. Target (issue 24, point 3): the files backup ≤ 1.0× restic's.
#
# Both sides do the same work: the folder is in the page cache for both (it was just
# written); both repositories are local folders on the same disk, each tool with its
# default compression (repository version 2) and its local cache in $WORK/cache
# (XDG_CACHE_HOME for lifeboat/rustic, RESTIC_CACHE_DIR for restic; emptied each round,
# kept from a round's first run to its incremental run, as on a real host); restic's scan
# (progress estimate) is part of restic as it runs by default; both print nothing (-q).
#
# PROFILE=1 adds a CPU profile of one more first backup by lifeboat (fresh repository) with
# `perf record -g`: the top symbols and the share of rustic's Rabin table building
# (`Rabin64::new_with_polynom` & co.; issue 24, point 3: none per file should be left).
# Without perf it says how to install it (`apt-get install linux-perf`).
#
#   bench/files.sh                                 # 10,000 files, 3 rounds
#   FILES=1000 ROUNDS=1 bench/files.sh             # a quick run (well under a minute)
#   PROFILE=1 bench/files.sh                       # with the perf profile
#   LIFEBOAT_BIN=path bench/files.sh               # a given binary, e.g. one built before
#
# Knobs: FILES (10000), ROUNDS (3), SEED (1), CHANGED_PCT (1), MIN_KIB (1), MAX_KIB (16),
# TEXT_PCT (70), PROFILE (0), WORK (/tmp/lifeboat-bench-files), KEEP_WORK (0).
#
# Prints a Markdown report on stdout (copy it into docs/benchmarks.md); raw figures in
# $WORK/rounds.tsv (kept with KEEP_WORK=1).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib-perf.sh"

FILES=${FILES:-10000}
ROUNDS=${ROUNDS:-3}
SEED=${SEED:-1}
CHANGED_PCT=${CHANGED_PCT:-1}
MIN_KIB=${MIN_KIB:-1}
MAX_KIB=${MAX_KIB:-16}
TEXT_PCT=${TEXT_PCT:-70}
PROFILE=${PROFILE:-0}
WORK=${WORK:-/tmp/lifeboat-bench-files}

[ -x /usr/bin/time ] || { echo "needs /usr/bin/time: apt-get install time" >&2; exit 2; }
command -v restic >/dev/null || { echo "needs restic: bash scripts/install-deps.sh" >&2; exit 2; }
build_lifeboat

rm -rf "$WORK"; mkdir -p "$WORK"
trap 'remove_work' EXIT
DATA="$WORK/data"
TSV="$WORK/rounds.tsv"; : > "$TSV"
echo "bench-password" > "$WORK/password"
export RESTIC_PASSWORD_FILE="$WORK/password"
export XDG_CACHE_HOME="$WORK/cache" RESTIC_CACHE_DIR="$WORK/cache/restic"

# The data: `gen.py make ROOT N SEED` writes the folder; `gen.py change ROOT N SEED ROUND PCT`
# rewrites PCT% of its files (new content, new size, same kind and path).
cat > "$WORK/gen.py" <<'PY'
import math, os, random, sys

mode, root, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
min_b = int(os.environ.get("MIN_KIB", "1")) * 1024
max_b = int(os.environ.get("MAX_KIB", "16")) * 1024
text_share = int(os.environ.get("TEXT_PCT", "70")) / 100

# A pool of text lines (identifiers, key = value, JSON, log lines), from the seed.
rng = random.Random(f"{seed}:pool")
letters = "abcdefghijklmnopqrstuvwxyz"
words = ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(3000)]
def line(r):
    k = r.random()
    ws = r.choices(words, k=r.randint(1, 9))
    if k < 0.35:  # source code
        return "    " * r.randint(0, 3) + ws[0] + " = " + "_".join(ws[1:3] or ws) + "(" + ", ".join(ws[3:]) + ")"
    if k < 0.55:  # config
        return ws[0].upper() + "_" + ws[-1].upper() + "=" + str(r.randint(0, 10 ** r.randint(1, 9)))
    if k < 0.75:  # JSON
        return '  {"id": %d, "%s": "%s", "ok": %s},' % (r.randint(1, 10 ** 7), ws[0], " ".join(ws[1:]), r.choice(["true", "false"]))
    return "2026-12-%02d %02d:%02d:%02d INFO %s" % (r.randint(1, 28), r.randint(0, 23), r.randint(0, 59), r.randint(0, 59), " ".join(ws))
pool = [line(rng) + "\n" for _ in range(20000)]

TEXT_EXT = [".py", ".rs", ".md", ".json", ".conf", ".log", ".txt", ".yaml"]
BIN_EXT = [".png", ".jpg", ".gz", ".bin"]

def meta(i):
    """Path and kind of file i: fixed by the seed and i alone."""
    r = random.Random(f"{seed}:meta:{i}")
    text = r.random() < text_share
    d = os.path.join(root, "p%02d" % (i % 16), "m%02d" % ((i // 16) % 25))
    if i % 3 == 0:
        d = os.path.join(d, "s%d" % (i % 4))
    ext = r.choice(TEXT_EXT if text else BIN_EXT)
    return d, "f%05d%s" % (i, ext), text

def write(i, version):
    d, name, text = meta(i)
    r = random.Random(f"{seed}:content:{i}:{version}")
    size = int(math.exp(r.uniform(math.log(min_b), math.log(max_b + 1))))
    if text:
        parts, total = [], 0
        while total < size:
            s = r.choice(pool)
            parts.append(s)
            total += len(s)
        body = "".join(parts).encode()[:size]
    else:
        body = r.randbytes(size)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(body)
    return size, text

if mode == "make":
    total = texts = 0
    for i in range(n):
        size, text = write(i, 0)
        total += size
        texts += text
    dirs = sum(len(ds) for _, ds, _ in os.walk(root))
    print(n, texts, n - texts, total, dirs)
else:
    rnd, pct = int(sys.argv[5]), float(sys.argv[6])
    k = max(1, round(n * pct / 100))
    for i in random.Random(f"{seed}:change:{rnd}").sample(range(n), k):
        write(i, rnd)
    print(k)
PY
export MIN_KIB MAX_KIB TEXT_PCT

log "generating $FILES files of $MIN_KIB–$MAX_KIB KiB (seed $SEED)"
GEN=$(python3 "$WORK/gen.py" make "$DATA" "$FILES" "$SEED")
read -r N_FILES N_TEXT N_BIN DATA_BYTES N_DIRS <<< "$GEN"

# lb_config DIR: lifeboat.toml in DIR, repository DIR/repo, files target `files` = $DATA.
lb_config() {
  mkdir -p "$1"
  cat > "$1/lifeboat.toml" <<TOML
[repository]
url = "$1/repo"
password-file = "$WORK/password"

[targets.files]
kind = "files"
paths = ["$DATA"]
TOML
  "$LIFEBOAT" -q -c "$1/lifeboat.toml" init >/dev/null
}


run() {  # run ROUND STEP TOOL
  local r=$WORK/r$1
  case $3 in
    lifeboat) measure "$1" "$2" lifeboat "$r/lb/repo" "$LIFEBOAT" -q -c "$r/lb/lifeboat.toml" backup files ;;
    restic) measure "$1" "$2" restic "$r/restic" restic backup -q "$DATA" ;;
  esac
}

CHANGED=0
for round in $(seq 1 "$ROUNDS"); do
  log "round $round"
  rm -rf "$WORK/cache"; mkdir -p "$WORK/cache"
  lb_config "$WORK/r$round/lb"
  export RESTIC_REPOSITORY="$WORK/r$round/restic"
  restic init -q >/dev/null
  if [ $((round % 2)) = 1 ]; then order=(lifeboat restic); else order=(restic lifeboat); fi
  for tool in "${order[@]}"; do run "$round" first "$tool"; done
  CHANGED=$(python3 "$WORK/gen.py" change "$DATA" "$FILES" "$SEED" "$round" "$CHANGED_PCT")
  for tool in "${order[@]}"; do run "$round" incremental "$tool"; done
  [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK/r$round"
done

# median STEP TOOL COLUMN (4 wall, 5 CPU, 6 bytes); all STEP TOOL COLUMN: every round's.
median() { awk -F'\t' -v s="$1" -v t="$2" -v c="$3" '$2 == s && $3 == t { print $c }' "$TSV" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
all() { awk -F'\t' -v s="$1" -v t="$2" -v c="$3" '$2 == s && $3 == t { printf "%s%s", sep, $c; sep = ", " }' "$TSV"; }
verdict() { awk -v r="$1" 'BEGIN { if (r == "-") print "—"; else if (r <= 1.0) print "met"; else printf "**not met** (%.0f%% over)\n", (r - 1) * 100 }'; }

echo "## Many small files — $(date -u +%Y-%m-%d) (bench/files.sh), $(machine)"
echo
echo "$N_FILES files in $N_DIRS folders, $(mib "$DATA_BYTES") MiB: $N_TEXT text-like (source, config, JSON, log lines), $N_BIN random bytes; sizes $MIN_KIB–$MAX_KIB KiB, log-uniform; seed $SEED."
echo "Incremental: $CHANGED of the files ($CHANGED_PCT%) rewritten with new content. $ROUNDS rounds, each with fresh repositories on the same local disk, order alternating (odd rounds lifeboat first); medians."
echo "\`lifeboat backup files\` (a files target of the folder) against \`restic backup <folder>\` (restic $(restic version | awk '{ print $2 }')); both with their default compression, their local cache in a scratch folder (kept from first to incremental run), the folder in the page cache, \`sync\` before each run. CPU: user + system seconds of the command and its children."
echo
echo "| run | tool | wall s | CPU s | repository MiB after it | wall, every round | CPU, every round |"
echo "| --- | --- | ---: | ---: | ---: | --- | --- |"
for step in first incremental; do
  for tool in restic lifeboat; do
    echo "| $step | $tool | $(median "$step" "$tool" 4) | $(median "$step" "$tool" 5) | $(mib "$(median "$step" "$tool" 6)") | $(all "$step" "$tool" 4) | $(all "$step" "$tool" 5) |"
  done
done
echo
echo "| run | wall lifeboat ÷ restic | CPU lifeboat ÷ restic | target (wall) | met? |"
echo "| --- | ---: | ---: | --- | --- |"
for step in first incremental; do
  w=$(ratio "$(median "$step" lifeboat 4)" "$(median "$step" restic 4)")
  c=$(ratio "$(median "$step" lifeboat 5)" "$(median "$step" restic 5)")
  echo "| $step | ${w}× | ${c}× | ≤ 1.0× | $(verdict "$w") |"
done
echo

if [ "$PROFILE" = 1 ]; then
  rm -rf "$WORK/cache"; mkdir -p "$WORK/cache"
  lb_config "$WORK/profile"
  perf_profile files "Profile: lifeboat's first backup of the $N_FILES files" \
    "$LIFEBOAT" -q -c "$WORK/profile/lifeboat.toml" backup files
fi
