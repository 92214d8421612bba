#!/usr/bin/env bash
# Benchmark (issue 23, performance): `lifeboat copy` against `restic copy` between the same
# two kinds of local repositories, in the same run.
#
# The realistic `app` database of bench/logical.sh (scale APP_SCALE, default 1: a logical
# snapshot of about 1 GB that compresses as real data does; pgbench's blank-padded rows
# shrink a hundredfold and would measure nothing) is backed up once by `lifeboat backup`
# into the source repository (restic format: restic reads it as it is). Then ROUNDS rounds (default 3), the order alternating, each copying that
# snapshot into a fresh, empty repository on the same disk:
#
#   lifeboat:  `lifeboat init --repo NAME`, then `lifeboat copy NAME` (the snapshot
#              verified there, the side area copied — what the command does);
#   restic:    `restic init` of the destination, then `restic copy --from-repo SRC`;
#
# each pair timed together.
#
# Then 1% more ledger rows (the insert-only table's growth), a second `lifeboat backup`, and a
# second copy into each round's destination by each tool: the bytes it adds to the
# destination against the first copy's.
#
# Every command is timed with /usr/bin/time (wall; CPU = user + system, children
# included); `sync` before each; both tools' caches in $WORK/cache, emptied each round.
# Throughput = the snapshot's bytes (as dumped) ÷ wall seconds. Targets: lifeboat's throughput ≥ 0.8×
# restic's (same run, medians); the second copy sends ≤ 5% of the first's bytes.
#
#   bench/copy.sh                          # app scale 1, 3 rounds
#   APP_SCALE=0.05 ROUNDS=1 bench/copy.sh  # a quick run
#
# Knobs: APP_SCALE (1), ROUNDS (3), WORK (/tmp/lifeboat-bench-copy), KEEP_WORK (0),
# LIFEBOAT_BIN. Prints a Markdown report on stdout; raw figures in $WORK/rounds.tsv.
source "$(dirname "$0")/lib.sh"

APP_SCALE=${APP_SCALE:-1}
ROUNDS=${ROUNDS:-3}
WORK=${WORK:-/tmp/lifeboat-bench-copy}
PORT=${PORT:-55439}

[ -x /usr/bin/time ] || { echo "needs /usr/bin/time: apt-get install time" >&2; exit 2; }
command -v restic >/dev/null || { echo "needs restic: bash scripts/install-deps.sh" >&2; exit 2; }
build_lifeboat

rm -rf "$WORK"; mkdir -p "$WORK"
trap 'stop_cluster "$WORK/pg"; remove_work' EXIT
TSV="$WORK/rounds.tsv"; : > "$TSV"
export RESTIC_PASSWORD_FILE="$WORK/lb/password"
export XDG_CACHE_HOME="$WORK/cache" RESTIC_CACHE_DIR="$WORK/cache/restic"

log "the app dataset, scale $APP_SCALE"
start_cluster "$WORK/pg" "$PORT"
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres)
app_dataset "$APP_SCALE" "${PSQL[@]}" >/dev/null

# The source repository (the target `app`) and one copy section per round (`r1`, …).
echo "postgres://postgres@127.0.0.1:$PORT/app" > "$WORK/app.url"
pgb_config "$WORK/lb" "$PORT" <<TOML

[targets.app]
kind = "postgres"
url-file = "$WORK/app.url"
globals = false
$(for r in $(seq 1 "$ROUNDS"); do printf '\n[copies.r%s]\nurl = "%s"\npassword-file = "%s"\n' "$r" "$WORK/r$r/lb" "$WORK/lb/password"; done)
TOML
LB=("$LIFEBOAT" -q -c "$WORK/lb/lifeboat.toml")
"${LB[@]}" init >/dev/null
log "first backup"
"${LB[@]}" backup app >/dev/null
SNAP_BYTES=$("${LB[@]}" snapshots --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshots"][-1]["bytes"])')


restic_first() {  # init and copy, timed together
  restic -q -r "$1" init >/dev/null && restic -q -r "$1" copy --from-repo "$WORK/lb/repo" --from-password-file "$WORK/lb/password"
}
lifeboat_first() {
  "$LIFEBOAT" -q -c "$WORK/lb/lifeboat.toml" init --repo "$1" >/dev/null && "$LIFEBOAT" -q -c "$WORK/lb/lifeboat.toml" copy "$1"
}
export -f restic_first lifeboat_first
export WORK LIFEBOAT

for round in $(seq 1 "$ROUNDS"); do
  log "round $round: first copy"
  rm -rf "$WORK/cache"; mkdir -p "$WORK/cache"
  if [ $((round % 2)) = 1 ]; then order=(lifeboat restic); else order=(restic lifeboat); fi
  for tool in "${order[@]}"; do
    case $tool in
      lifeboat) measure "$round" first lifeboat "$WORK/r$round/lb" bash -c "lifeboat_first r$round" ;;
      restic) measure "$round" first restic "$WORK/r$round/restic" bash -c "restic_first $WORK/r$round/restic" ;;
    esac
  done
done

log "1% more ledger rows, second backup"
"${PSQL[@]}" -d app -c "INSERT INTO credit_ledger SELECT id + 100000000, user_id, amount, reason, ref, created_at + interval '400 days' FROM credit_ledger WHERE id % 100 = 0"
"${LB[@]}" backup app >/dev/null
for round in $(seq 1 "$ROUNDS"); do
  log "round $round: second copy"
  if [ $((round % 2)) = 1 ]; then order=(lifeboat restic); else order=(restic lifeboat); fi
  for tool in "${order[@]}"; do
    case $tool in
      lifeboat) measure "$round" second lifeboat "$WORK/r$round/lb" "${LB[@]}" copy "r$round" ;;
      restic) measure "$round" second restic "$WORK/r$round/restic" restic -q -r "$WORK/r$round/restic" copy --from-repo "$WORK/lb/repo" --from-password-file "$WORK/lb/password" ;;
    esac
  done
done
# Both destinations hold what the source holds: restic checks the last round's.
restic -q -r "$WORK/r$ROUNDS/lb" check >/dev/null
restic -q -r "$WORK/r$ROUNDS/restic" check >/dev/null

median() { awk -F'\t' -v s="$1" -v t="$2" -v c="$3" '$2 == s && $3 == t { print $c }' "$TSV" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
all() { awk -F'\t' -v s="$1" -v t="$2" -v c="$3" '$2 == s && $3 == t { printf "%s%s", sep, $c; sep = ", " }' "$TSV"; }
# Bytes the second copy added, per round, as a share of the first copy's.
share() { awk -F'\t' -v t="$1" '$3 == t && $2 == "first" { f[$1] = $6 } $3 == t && $2 == "second" { s[$1] = $6 } END { for (r in f) printf "%.2f\n", (s[r] - f[r]) * 100 / f[r] }' "$TSV" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

LB_WALL=$(median first lifeboat 4); RS_WALL=$(median first restic 4)
TP_RATIO=$(ratio "$RS_WALL" "$LB_WALL")
LB_SHARE=$(share lifeboat); RS_SHARE=$(share restic)
echo "## Copy to a second repository — $(date -u +%Y-%m-%d) (bench/copy.sh), $(machine)"
echo
echo "The app dataset (bench/logical.sh) at scale $APP_SCALE: one logical snapshot of $(mib "$SNAP_BYTES") MiB as dumped, $(mib "$(bytes "$WORK/lb/repo")") MiB in the repository; $ROUNDS rounds, order alternating, fresh local destination each round."
echo
echo "| | lifeboat copy | restic copy |"
echo "|---|---|---|"
echo "| first copy, wall s (median; all) | $LB_WALL ($(all first lifeboat 4)) | $RS_WALL ($(all first restic 4)) |"
echo "| first copy, CPU s (median) | $(median first lifeboat 5) | $(median first restic 5) |"
echo "| throughput MiB/s | $(awk -v b="$SNAP_BYTES" -v w="$LB_WALL" 'BEGIN { printf "%.1f", b / 1048576 / w }') | $(awk -v b="$SNAP_BYTES" -v w="$RS_WALL" 'BEGIN { printf "%.1f", b / 1048576 / w }') |"
echo "| destination size after the first copy (median) | $(mib "$(median first lifeboat 6)") MiB | $(mib "$(median first restic 6)") MiB |"
echo "| second copy after +1% ledger rows, wall s (median) | $(median second lifeboat 4) | $(median second restic 4) |"
echo "| second copy's bytes ÷ first's (median) | $LB_SHARE% | $RS_SHARE% |"
echo
echo "lifeboat's throughput ÷ restic's: **${TP_RATIO}×** (target ≥ 0.8×). Second copy: **$LB_SHARE%** of the first's bytes (target ≤ 5%)."
