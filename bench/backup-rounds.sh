#!/usr/bin/env bash
# Benchmark (issue 24, point 2): the logical backup's cost against what a runbook does with
# restic, on the same database in one run. Five rounds; each runs the floor
# (`pg_dump -Fc -Z0 > /dev/null`), `pg_dump -Fc -Z0 | restic backup --stdin` and
# `lifeboat backup`, in an order that rotates from round to round. Wall time and core-seconds
# (user + system of the whole pipeline, children included) of each; medians and ratios:
# lifeboat's wall against restic's, and each tool's core-seconds over the floor.
#
#   bench/backup-rounds.sh                     # pgbench scale 50, 5 rounds
#   PGBENCH_SCALE=10 ROUNDS=3 bench/backup-rounds.sh
#   DATASET=app bench/backup-rounds.sh         # the realistic app data (lib.sh), scale 1
#   DATASET=app APP_SCALE=0.3 bench/backup-rounds.sh
#
# Prints a Markdown report on stdout; raw figures in $WORK/rounds.tsv.
source "$(dirname "$0")/lib.sh"

PGBENCH_SCALE=${PGBENCH_SCALE:-50}
DATASET=${DATASET:-pgbench}
APP_SCALE=${APP_SCALE:-1}
ROUNDS=${ROUNDS:-5}
WORK=${WORK:-/tmp/lifeboat-bench-rounds}
PORT=${PORT:-55433}

build_lifeboat
rm -rf "$WORK"; mkdir -p "$WORK/lb"
trap 'stop_cluster "$WORK/pg"; remove_work' EXIT
start_cluster "$WORK/pg" "$PORT"
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
case $DATASET in
  pgbench)
    DB=pgb
    "$PGBIN/psql" -X -q -d postgres -c "CREATE DATABASE pgb"
    "$PGBIN/pgbench" -i -q -s "$PGBENCH_SCALE" pgb >/dev/null 2>&1
    DATA_TEXT="pgbench scale $PGBENCH_SCALE" ;;
  app)
    DB=app
    log "generating the app dataset, scale $APP_SCALE (a few minutes)"
    app_dataset "$APP_SCALE" "$PGBIN/psql" -X -q
    DATA_TEXT="the app dataset (bench/lib.sh: users, images with JSON metadata, a credit ledger, posts with text bodies) at scale $APP_SCALE" ;;
  *) echo "DATASET is pgbench or app, not $DATASET" >&2; exit 2 ;;
esac
# The target is called `pgb` whichever database it backs up.
pgb_config "$WORK/lb" "$PORT" </dev/null
echo "postgres://postgres@127.0.0.1:$PORT/$DB" > "$WORK/lb/pgb.url"
export LB="$LIFEBOAT -q -c $WORK/lb/lifeboat.toml" PGBIN
$LB init >/dev/null
export RESTIC_PASSWORD=bench-password RESTIC_REPOSITORY="$WORK/restic"
restic init -q >/dev/null

TSV="$WORK/rounds.tsv"; : > "$TSV"
# measure NAME COMMAND: wall and core-seconds of `bash -c COMMAND` (children included).
measure() {
  sync; "$PGBIN/psql" -X -q -d postgres -c CHECKPOINT; sleep 1
  /usr/bin/time -o "$WORK/time" -f "%e %U %S" bash -c "$2" >/dev/null 2>"$WORK/stderr" ||
    { cat "$WORK/stderr" >&2; echo "failed: $1" >&2; exit 1; }
  tail -n 1 "$WORK/time" | awk -v n="$1" '{ printf "%s\t%.2f\t%.2f\n", n, $1, $2 + $3 }' >> "$TSV"
}
FLOOR="\"\$PGBIN/pg_dump\" --no-sync -Fc -Z0 -f /dev/null $DB"
RESTIC="\"\$PGBIN/pg_dump\" -Fc -Z0 $DB | restic backup -q --stdin --stdin-filename $DB.dump"
LIFEBOAT_CMD='$LB backup pgb'
tools=(floor restic lifeboat)
cmd() { case $1 in floor) echo "$FLOOR";; restic) echo "$RESTIC";; lifeboat) echo "$LIFEBOAT_CMD";; esac; }
for round in $(seq 1 "$ROUNDS"); do
  log "round $round"
  for k in 0 1 2; do
    t=${tools[$(( (k + round - 1) % 3 ))]}
    measure "$t" "$(cmd "$t")"
  done
done

median() { awk -F'\t' -v n="$1" -v c="$2" '$1 == n { print $c }' "$TSV" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
all() { awk -F'\t' -v n="$1" -v c="$2" '$1 == n { printf "%s%s", s, $c; s = ", " }' "$TSV"; }
echo "## Backup rounds — $(date -u +%Y-%m-%d), $(machine)"
echo
echo "$DATA_TEXT ($("$PGBIN/psql" -X -At -d "$DB" -c "SELECT pg_size_pretty(pg_database_size('$DB'))")), $ROUNDS rounds in rotating order; medians."
echo
echo "| tool | wall s | core-s | core-s over the floor | wall, every round | core-s, every round |"
echo "| --- | ---: | ---: | ---: | --- | --- |"
fw=$(median floor 2); fc=$(median floor 3)
for t in floor restic lifeboat; do
  w=$(median "$t" 2); c=$(median "$t" 3)
  over=$(awk -v a="$c" -v b="$fc" 'BEGIN { printf "%.2f", a - b }')
  echo "| $t | $w | $c | $over | $(all "$t" 2) | $(all "$t" 3) |"
done
lw=$(median lifeboat 2); rw=$(median restic 2); lc=$(median lifeboat 3); rc=$(median restic 3)
echo
echo "Wall: lifeboat $(ratio "$lw" "$rw")× restic, $(ratio "$lw" "$fw")× the floor. Core-seconds over the floor: lifeboat $(awk -v a="$lc" -v b="$fc" 'BEGIN { printf "%.2f", a - b }'), restic $(awk -v a="$rc" -v b="$fc" 'BEGIN { printf "%.2f", a - b }')."
