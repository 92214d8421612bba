#!/usr/bin/env bash
# Benchmark: logical PostgreSQL backup and restore, lifeboat against its peers, all in one
# run on the same data. Two datasets: pgbench (its padding compresses to almost nothing)
# and a generated app dataset (users, images with URLs, JSON metadata, a credit ledger,
# random text) that compresses like real data.
#
#   bench/logical.sh                       # pgbench scale 50, app scale 1 (~1 GB)
#   PGBENCH_SCALE=10 APP_SCALE=0.2 bench/logical.sh   # a quick run
#
# Prints a Markdown report on stdout (copy it into docs/benchmarks.md) and keeps the raw
# figures in $WORK/results.tsv.
source "$(dirname "$0")/lib.sh"

PGBENCH_SCALE=${PGBENCH_SCALE:-50}
APP_SCALE=${APP_SCALE:-1}
JOBS=${JOBS:-2}
WORK=${WORK:-/tmp/lifeboat-bench-logical}
PORT=${PORT:-55432}

build_lifeboat
bash "$ROOT/scripts/install-deps.sh"

rm -rf "$WORK"; mkdir -p "$WORK"
trap 'stop_cluster "$WORK/pg"; remove_work' EXIT
start_cluster "$WORK/pg" "$PORT"
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1)
RESULTS="$WORK/results.tsv"
: > "$RESULTS"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RESULTS"; }  # dataset what seconds bytes


log "generating pgbench scale $PGBENCH_SCALE"
"${PSQL[@]}" -d postgres -c "CREATE DATABASE pgb"
"$PGBIN/pgbench" -i -q -s "$PGBENCH_SCALE" pgb >/dev/null 2>&1

log "generating the app dataset, scale $APP_SCALE"
app_dataset "$APP_SCALE" "${PSQL[@]}"

mkdir -p "$WORK/lb" "$WORK/out"
echo "postgres://postgres@127.0.0.1:$PORT/app" > "$WORK/lb/app.url"
pgb_config "$WORK/lb" "$PORT" <<TOML

[targets.app]
kind = "postgres"
url-file = "$WORK/lb/app.url"
globals = false
TOML
LB=("$LIFEBOAT" -q -c "$WORK/lb/lifeboat.toml")
"${LB[@]}" init >/dev/null
export RESTIC_PASSWORD=bench-password RESTIC_REPOSITORY="$WORK/restic"
restic init -q >/dev/null

# Before every timed step: flush dirty pages and checkpoint, so that no tool pays for the
# writes of the one timed before it.
settle() { sync; "${PSQL[@]}" -d postgres -c CHECKPOINT; sleep 1; }

# backup_round DATASET LABEL: every tool once; records wall time and bytes.
backup_round() {
  local db=$1 label=$2 s before
  settle; s=$(now); "$PGBIN/pg_dump" --no-sync -Fc -Z0 -f /dev/null "$db"; record "$db" "$label floor (pg_dump -Fc -Z0 > /dev/null)" "$(elapsed "$s")" 0
  settle; s=$(now); "$PGBIN/pg_dump" -Fc -f "$WORK/out/$db.$label.dump" "$db"
  record "$db" "$label pg_dump -Fc (file)" "$(elapsed "$s")" "$(bytes "$WORK/out/$db.$label.dump")"
  settle; s=$(now); "$PGBIN/pg_dump" "$db" | gzip > "$WORK/out/$db.$label.sql.gz"
  record "$db" "$label pg_dump | gzip" "$(elapsed "$s")" "$(bytes "$WORK/out/$db.$label.sql.gz")"
  before=$(bytes "$WORK/restic")
  settle; s=$(now); "$PGBIN/pg_dump" -Fc -Z0 "$db" | restic backup -q --stdin --stdin-filename "$db.dump" --tag "$db" >/dev/null
  record "$db" "$label restic --stdin (pg_dump -Fc -Z0)" "$(elapsed "$s")" "$(( $(bytes "$WORK/restic") - before ))"
  before=$(bytes "$WORK/lb/repo")
  settle; s=$(now); "${LB[@]}" backup "$db" >/dev/null
  record "$db" "$label lifeboat backup" "$(elapsed "$s")" "$(( $(bytes "$WORK/lb/repo") - before ))"
}

for db in pgb app; do
  log "first backups of $db"
  backup_round "$db" first
done

log "change: append 1% rows to the insert-only ledger (app)"
"${PSQL[@]}" -d app -c "INSERT INTO credit_ledger SELECT id + 100000000, user_id, amount, reason, ref, created_at + interval '400 days' FROM credit_ledger WHERE id % 100 = 0"
log "change: pgbench -T 30 random updates (pgb)"
"$PGBIN/pgbench" -c 2 -j 2 -T 30 pgb >/dev/null 2>&1
for db in pgb app; do
  log "second backups of $db"
  backup_round "$db" second
done

log "restores (three rounds, alternating which tool goes first; the report shows medians)"
restore_pg() {
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS r_pg" -c "CREATE DATABASE r_pg"
  settle; local s; s=$(now); "$PGBIN/pg_restore" -j "$2" -d r_pg "$WORK/out/$1.second.dump"
  record "$1" "restore pg_restore -j $2 (local -Fc file)" "$(elapsed "$s")" 0
}
restore_lb() {
  "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS r_lb"
  settle; local s; s=$(now); "${LB[@]}" restore "$1" --to "postgres://postgres@127.0.0.1:$PORT/r_lb" --jobs "$2" >/dev/null
  record "$1" "restore lifeboat --jobs $2 (incl. row-count verification)" "$(elapsed "$s")" 0
}
for round in 1 2 3; do
  for db in pgb app; do
    for jobs in 1 "$JOBS"; do
      if [ $((round % 2)) -eq 1 ]; then restore_pg "$db" "$jobs"; restore_lb "$db" "$jobs"
      else restore_lb "$db" "$jobs"; restore_pg "$db" "$jobs"; fi
    done
  done
done

# Report.
# get DATASET WHAT COLUMN: the value, or the median of repeated measurements.
get() {
  awk -F'\t' -v d="$1" -v w="$2" -v c="$3" '$1 == d && $2 == w { print $c }' "$RESULTS" |
    sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}
echo "## Logical backup — $(date -u +%Y-%m-%d), $(machine)"
echo
echo "pgbench scale $PGBENCH_SCALE; app dataset scale $APP_SCALE. Sizes of the databases:"
for db in pgb app; do
  echo "- \`$db\`: $("${PSQL[@]}" -At -d "$db" -c "SELECT pg_size_pretty(pg_database_size(current_database()))")"
done
for db in pgb app; do
  floor=$(get "$db" "first floor (pg_dump -Fc -Z0 > /dev/null)" 3)
  echo
  echo "### \`$db\`"
  echo
  echo "| run | tool | wall s | × floor | stored MiB |"
  echo "| --- | --- | ---: | ---: | ---: |"
  awk -F'\t' -v d="$db" '$1 == d && $2 !~ /^restore/' "$RESULTS" | while IFS=$'\t' read -r _ what secs b; do
    tool=${what#* }; echo "| ${what%% *} | ${tool//|/\\|} | $secs | $(ratio "$secs" "$floor") | $(mib "$b") |"
  done
  echo
  echo "| restore | median wall s | the three rounds |"
  echo "| --- | ---: | --- |"
  for what in "restore pg_restore -j 1 (local -Fc file)" "restore lifeboat --jobs 1 (incl. row-count verification)" \
              "restore pg_restore -j $JOBS (local -Fc file)" "restore lifeboat --jobs $JOBS (incl. row-count verification)"; do
    all=$(awk -F'\t' -v d="$db" -v w="$what" '$1 == d && $2 == w { printf "%s%s", sep, $3; sep = ", " }' "$RESULTS")
    echo "| ${what#restore } | $(get "$db" "$what" 3) | $all |"
  done
  lb1=$(get "$db" "first lifeboat backup" 3); rs1=$(get "$db" "first restic --stdin (pg_dump -Fc -Z0)" 3)
  fc1=$(get "$db" "first pg_dump -Fc (file)" 3); fcb=$(get "$db" "first pg_dump -Fc (file)" 4)
  lbb=$(get "$db" "first lifeboat backup" 4); lb2b=$(get "$db" "second lifeboat backup" 4); rs2b=$(get "$db" "second restic --stdin (pg_dump -Fc -Z0)" 4)
  r1=$(get "$db" "restore lifeboat --jobs 1 (incl. row-count verification)" 3); p1=$(get "$db" "restore pg_restore -j 1 (local -Fc file)" 3)
  rj=$(get "$db" "restore lifeboat --jobs $JOBS (incl. row-count verification)" 3); pj=$(get "$db" "restore pg_restore -j $JOBS (local -Fc file)" 3)
  echo
  echo "Ratios: backup wall $(ratio "$lb1" "$floor")× the floor, $(ratio "$lb1" "$rs1")× restic, $(ratio "$lb1" "$fc1")× \`pg_dump -Fc\`;"
  echo "stored $(ratio "$lbb" "$fcb")× \`pg_dump -Fc\`'s bytes; second backup stored $(ratio "$lb2b" "$lbb")× the first, $(ratio "$lb2b" "$rs2b")× restic's second;"
  echo "restore $(ratio "$r1" "$p1")× \`pg_restore\` (1 job), $(ratio "$rj" "$pj")× with $JOBS jobs."
done
