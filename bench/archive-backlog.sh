#!/usr/bin/env bash
# Benchmark: does WAL archiving keep up with a write-heavy load? `pgbench -c 8 -j 2` for
# $DURATION seconds with archive_command = `lifeboat wal push` (look-ahead), then the same
# with pgBackRest's async archive-push, on the same cluster in one run. The `.ready`
# backlog (WAL files waiting for the archiver) is sampled twice a second; the PITR issue
# asks that it stays at 2 or below for lifeboat.
#
#   bench/archive-backlog.sh                   # pgbench scale 50, 120 s per archiver
#   SCALE=10 DURATION=30 bench/archive-backlog.sh
#
# Prints a Markdown report on stdout.
source "$(dirname "$0")/lib.sh"

SCALE=${SCALE:-50}
DURATION=${DURATION:-120}
WORK=${WORK:-/tmp/lifeboat-bench-backlog}
PORT=${PORT:-55436}
build_lifeboat
bash "$ROOT/scripts/install-deps.sh"
rm -rf "$WORK"; mkdir -p "$WORK"
trap 'stop_cluster "$WORK/pg"; remove_work' EXIT
archiving_bench

log "pgbench -i -s $SCALE (archiving to both, then a checkpoint)"
set_archive "$LB_PUSH && $PGBR_PUSH"
"$PGBIN/pgbench" -i -q -s "$SCALE" postgres >/dev/null 2>&1
"${PSQL[@]}" -c "CHECKPOINT" -c "SELECT pg_switch_wal()" >/dev/null
while [ "$(ready)" -gt 0 ]; do sleep 0.2; done

# load LABEL COMMAND: archive with COMMAND under pgbench; one row of the report.
load() {
  set_archive "$2"
  local lsn0 samples="$WORK/samples-$3" tps
  lsn0=$("${PSQL[@]}" -c "SELECT pg_current_wal_lsn()")
  : > "$samples"
  ( while :; do ready >> "$samples"; sleep 0.5; done ) &
  local sampler=$!
  tps=$("$PGBIN/pgbench" -c 8 -j 2 -T "$DURATION" postgres 2>/dev/null \
    | awk -F' = ' '/^tps/ { printf "%.0f", $2; exit }')
  kill "$sampler"; wait "$sampler" 2>/dev/null || true
  local wal_mib
  wal_mib=$("${PSQL[@]}" -c "SELECT round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0') / 1048576.0)")
  local failed
  failed=$("${PSQL[@]}" -c "SELECT failed_count FROM pg_stat_archiver")
  awk -v label="$1" -v tps="$tps" -v wal="$wal_mib" -v d="$DURATION" -v failed="$failed" '
    { n++; sum += $1; if ($1 > max) max = $1; if ($1 > 2) over++ }
    END { printf "| %s | %s | %.0f MiB (%.1f MiB/s) | %d | %.2f | %d of %d | %s |\n",
          label, tps, wal, wal / d, max, sum / n, over, n, failed }' "$samples"
  log "$1 done"
  while [ "$(ready)" -gt 0 ]; do sleep 0.2; done
}

{
  echo "### WAL archiving under load (bench/archive-backlog.sh), $(date +%F)"
  echo
  echo "Machine: $(machine), pgBackRest $(pgbackrest version | awk '{ print $2 }')."
  echo "pgbench scale $SCALE, \`pgbench -c 8 -j 2 -T $DURATION\` per archiver; \`.ready\` files sampled every 0.5 s."
  echo
  echo "| archiver | pgbench tps | WAL written | max .ready | mean .ready | samples above 2 | archiver failures (cumulative) |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  load "lifeboat wal push (look-ahead)" "$LB_PUSH" lb
  load "pgbackrest archive-push (async)" "$PGBR_PUSH" pgbr
}
