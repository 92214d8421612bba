#!/usr/bin/env bash
# Benchmark: physical backups, WAL archiving and point-in-time recovery — lifeboat against
# pgBackRest (Debian's, zstd level 3, process-max 2, async archive-push) and
# pg_basebackup, on the same cluster in one run.
#
#   bench/pitr.sh                  # pgbench scale 100
#   SCALE=10 bench/pitr.sh         # a quick run
#
# Steps: (1) archiving fails while `pgbench -i` fills ~100 segments, then the backlog is
# drained by lifeboat, and a second backlog by pgBackRest; (2) first base backups: lifeboat,
# `pgbackrest --type=full`, `pg_basebackup -Ft -Xnone`; (3) `pgbench -T 60`, second backups
# (lifeboat, `pgbackrest --type=incr`); (4) restore + recovery from the first backups to a
# moment 30 s into the pgbench run (both replay the same WAL), server started and promoted,
# in $ROUNDS rounds (default 5).
# Prints a Markdown report on stdout.
source "$(dirname "$0")/lib.sh"

SCALE=${SCALE:-100}
WORK=${WORK:-/tmp/lifeboat-bench-pitr}
PORT=${PORT:-55435}
build_lifeboat
bash "$ROOT/scripts/install-deps.sh"

stop_all() {
  for d in "$WORK/pg" "$WORK/r-lb" "$WORK/r-pgbr"; do [ -d "$d/data" ] && stop_cluster "$d"; done
  [ -f "$WORK/r-lb/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$WORK/r-lb" -m immediate stop >/dev/null 2>&1
  [ -f "$WORK/r-pgbr/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$WORK/r-pgbr" -m immediate stop >/dev/null 2>&1
  true
}
rm -rf "$WORK"; mkdir -p "$WORK"
trap 'stop_all; remove_work' EXIT
archiving_bench
drain() { # drain LABEL COMMAND: switch to COMMAND, time until no .ready is left
  local n s; n=$(ready); s=$(now)
  set_archive "$2"
  while [ "$(ready)" -gt 0 ]; do sleep 0.05; done
  local t; t=$(elapsed "$s")
  printf '%s\t%s\t%s\n' "$1" "$n" "$t" >> "$WORK/drain.tsv"
  log "$1: $n segments in $t s"
}

log "pgbench -i -s $SCALE with archiving failing"
"$PGBIN/pgbench" -i -q -s "$SCALE" postgres >/dev/null 2>&1
"${PSQL[@]}" -c "CHECKPOINT" -c "SELECT pg_switch_wal()" >/dev/null
drain "lifeboat wal push (look-ahead)" "$LB_PUSH"
set_archive "/bin/false"
log "a second backlog: a copy of pgbench_accounts"
"${PSQL[@]}" -c "CREATE TABLE accounts_copy AS SELECT * FROM pgbench_accounts" -c "SELECT pg_switch_wal()" >/dev/null
drain "pgbackrest archive-push (async)" "$PGBR_PUSH"
# From here on both archive every segment.
set_archive "$LB_PUSH && $PGBR_PUSH"
"${PSQL[@]}" -c "DROP TABLE accounts_copy" -c "CHECKPOINT" >/dev/null

: > "$WORK/backup.tsv"
backup() { # backup LABEL DIR COMMAND...: wall time and bytes added to DIR
  local label=$1 dir=$2 before s; shift 2
  sync; "${PSQL[@]}" -c CHECKPOINT >/dev/null; before=$(bytes "$dir"); s=$(now)
  "$@" >/dev/null
  printf '%s\t%s\t%s\n' "$label" "$(elapsed "$s")" "$(( $(bytes "$dir") - before ))" >> "$WORK/backup.tsv"
}
log "first base backups"
backup "lifeboat backup (first)" "$WORK/lb/repo" "${LB[@]}" backup
backup "pgbackrest --type=full" "$WORK/pgbr/repo" "${PGBR[@]}" backup --type=full
mkdir -p "$WORK/basebackup"
backup "pg_basebackup -Ft -Xnone" "$WORK/basebackup" "$PGBIN/pg_basebackup" -D "$WORK/basebackup/b1" -Ft -X none -c fast
FIRST_PGBR=$("${PGBR[@]}" info --output=json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["backup"][0]["label"])')
FIRST_LB=$("$WORK/lifeboat" -c "$WORK/lb/lifeboat.toml" snapshots --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshots"][0]["id"])')

log "pgbench -T 60"
"$PGBIN/pgbench" -c 2 -j 2 -T 60 postgres >/dev/null 2>&1 &
sleep 30; TARGET=$("${PSQL[@]}" -c "SELECT now()"); wait
"${PSQL[@]}" -c "SELECT pg_switch_wal()" >/dev/null
sleep 2
log "second base backups"
backup "lifeboat backup (second)" "$WORK/lb/repo" "${LB[@]}" backup
backup "pgbackrest --type=incr" "$WORK/pgbr/repo" "${PGBR[@]}" backup --type=incr

log "restore + recovery to $TARGET from the first backups"
wait_promoted() { # PORT
  until [ "$("$PGBIN/psql" -X -At -h 127.0.0.1 -p "$1" -U postgres -d postgres -c 'SELECT NOT pg_is_in_recovery()' 2>/dev/null)" = "t" ]; do sleep 0.1; done
}
RPORT1=$((PORT + 1)); RPORT2=$((PORT + 2))
restore_lb() {
  rm -rf "$WORK/r-lb"; sync; local s; s=$(now)
  "$WORK/lifeboat" -q -c "$WORK/lb/lifeboat.toml" restore db --snapshot "$FIRST_LB" --to-dir "$WORK/r-lb" \
    --time "$TARGET" --start --port "$RPORT1" --no-archive >/dev/null
  echo "$(elapsed "$s")" >> "$WORK/restore-lb"
  as_pg "$PGBIN/pg_ctl" -D "$WORK/r-lb" -m immediate stop >/dev/null
}
restore_pgbr() {
  rm -rf "$WORK/r-pgbr"; mkdir -p "$WORK/r-pgbr"; chown postgres:postgres "$WORK/r-pgbr" 2>/dev/null || true
  sync; local s; s=$(now)
  "${PGBR[@]}" restore --set="$FIRST_PGBR" --pg1-path="$WORK/r-pgbr" --type=time --target="$TARGET" \
    --target-action=promote --archive-mode=off >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$WORK/r-pgbr" -l "$WORK/r-pgbr.log" -o "-p $RPORT2 -c unix_socket_directories=''" -w start >/dev/null
  wait_promoted "$RPORT2"
  echo "$(elapsed "$s")" >> "$WORK/restore-pgbr"
  as_pg "$PGBIN/pg_ctl" -D "$WORK/r-pgbr" -m immediate stop >/dev/null
}
# $ROUNDS rounds, alternating which tool goes first (the first round after the backups is
# the slowest for both tools); the report shows medians.
ROUNDS=${ROUNDS:-5}
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then restore_lb; restore_pgbr; else restore_pgbr; restore_lb; fi
done
median() { sort -n "$1" | sed -n "$(( (ROUNDS + 1) / 2 ))p"; }
rounds() { paste -sd, "$1" | sed 's/,/, /g'; }
T_LB=$(median "$WORK/restore-lb"); T_PGBR=$(median "$WORK/restore-pgbr")

# Report.
col() { awk -F'\t' -v w="$1" -v c="$2" '$1 == w { print $c }' "$3"; }
echo "## Physical backup and PITR — $(date -u +%Y-%m-%d), $(machine), pgBackRest $(pgbackrest version | awk '{ print $2 }')"
echo
echo "pgbench scale $SCALE; database $("${PSQL[@]}" -c "SELECT pg_size_pretty(pg_database_size('postgres'))"), data directory $(du -sh "$DATA" | cut -f1)."
echo
echo "| base backup | wall s | stored MiB |"
echo "| --- | ---: | ---: |"
while IFS=$'\t' read -r what secs b; do echo "| $what | $secs | $(mib "$b") |"; done < "$WORK/backup.tsv"
echo
echo "| archiving a backlog | segments | wall s | segments/s |"
echo "| --- | ---: | ---: | ---: |"
while IFS=$'\t' read -r what n secs; do echo "| $what | $n | $secs | $(ratio "$n" "$secs") |"; done < "$WORK/drain.tsv"
echo
echo "| restore + recovery to $TARGET (from the first backups), server promoted | median wall s | the $ROUNDS rounds (lifeboat first in odd rounds) |"
echo "| --- | ---: | --- |"
echo "| lifeboat restore --time --start | $T_LB | $(rounds "$WORK/restore-lb") |"
echo "| pgbackrest restore --type=time + pg_ctl start | $T_PGBR | $(rounds "$WORK/restore-pgbr") |"
echo
lb1=$(col "lifeboat backup (first)" 2 "$WORK/backup.tsv"); br1=$(col "pgbackrest --type=full" 2 "$WORK/backup.tsv")
lb2b=$(col "lifeboat backup (second)" 3 "$WORK/backup.tsv"); br2b=$(col "pgbackrest --type=incr" 3 "$WORK/backup.tsv")
lbr=$(awk -F'\t' 'NR == 1 { print $2 / $3 }' "$WORK/drain.tsv"); brr=$(awk -F'\t' 'NR == 2 { print $2 / $3 }' "$WORK/drain.tsv")
echo "Ratios: base backup wall $(ratio "$lb1" "$br1")× pgBackRest's full (target ≤ 1.0×);" \
  "second backup stored $(ratio "$lb2b" "$br2b")× pgBackRest's incr; archiving rate $(ratio "$lbr" "$brr")× pgBackRest's (target ≥ 1.0×);" \
  "restore + recovery $(ratio "$T_LB" "$T_PGBR")× pgBackRest's (target ≤ 1.0×)."
