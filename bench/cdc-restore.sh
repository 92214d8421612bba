#!/usr/bin/env bash
# Benchmark (issue 22, third target): restoring a `mode = "cdc"` target to a moment against
# lifeboat's own physical point-in-time recovery of the same history, side by side.
#   One cluster (`wal_level = logical`, WAL archived by `lifeboat wal push`), one repository,
#   two targets on the same database `pgb`: `pitr` (`mode = "physical"`, from the data
#   directory) and `cdc` (`mode = "cdc"`). `pgbench -i -s $SCALE`, then the physical base
#   backup and the cdc baseline; `lifeboat cdc run cdc` captures while pgbench makes about
#   $CHANGES row changes (a TPC-B transaction is 3 UPDATEs + 1 INSERT); then the moment T,
#   a commit after it (recovery to a time stops at the first commit past it), a WAL switch,
#   the archive and the capture caught up, the capture stopped.
#   Timed, alternating, $ROUNDS rounds of each:
#     physical: `restore pitr --time T --to-dir DIR --start --port P --no-archive`
#               (base backup + archived WAL, until the server has recovered to T and promoted);
#     cdc:      `restore cdc --time T --to postgres://…/restored_N` (baseline + replay), into
#               a scratch cluster beside the source that does not archive (restoring into the
#               source cluster would have its archiver push the restore's WAL meanwhile).
#   Each copy's pgbench tables (row counts, sums of balances) must equal the source's at T.
# Target: the cdc restore of a 1 GB baseline plus 1,000,000 changes takes at most 2× the
# physical PITR of the same history.
#
#   bench/cdc-restore.sh                          # scale 70 (~1 GB), 1,000,000 changes, 1 round
#   ROUNDS=3 bench/cdc-restore.sh
#   SCALE=5 CHANGES=50000 bench/cdc-restore.sh    # a quick smoke run
# Other knobs: CLIENTS=4 THREADS=2 (pgbench -c/-j), FLUSH=1s (the cdc target's
# flush-interval), JOBS=1 (the cdc restore's --jobs), CDC_DEST=scratch|source (where the cdc
# restores create their database), PORT=59330 (PORT+1: the recovered server, PORT+2: the
# scratch cluster), WORK=/tmp/lifeboat-bench-cdc-restore (several GB at scale 70).
#
# Prints a Markdown report on stdout (for docs/benchmarks.md); KEEP_WORK=1 keeps $WORK.
source "$(dirname "$0")/lib.sh"

SCALE=${SCALE:-70}
CHANGES=${CHANGES:-1000000}
ROUNDS=${ROUNDS:-1}
CLIENTS=${CLIENTS:-4}
THREADS=${THREADS:-2}
FLUSH=${FLUSH:-1s}
JOBS=${JOBS:-1}            # `restore --jobs` of the cdc restore (lifeboat's default: 1)
WORK=${WORK:-/tmp/lifeboat-bench-cdc-restore}
PORT=${PORT:-59330}        # the source; PORT+1: the physically restored server; PORT+2: scratch
# Where the cdc restores create their database: `scratch` (a cluster of its own on PORT+2,
# not archiving) or `source` (the source cluster, whose archiver then pushes the restore's
# WAL into the repository while it runs).
CDC_DEST=${CDC_DEST:-scratch}
RPORT=$((PORT + 1))
case "$CDC_DEST" in
  scratch) DPORT=$((PORT + 2)) ;;
  source) DPORT=$PORT ;;
  *) echo "CDC_DEST is scratch or source, not $CDC_DEST" >&2; exit 2 ;;
esac

# The TPC-B transactions that make about $CHANGES changes, split over the clients.
PER_CLIENT=$(( (CHANGES / 4 + CLIENTS - 1) / CLIENTS ))
TXNS=$((PER_CLIENT * CLIENTS))

build_lifeboat
rm -rf "$WORK"; mkdir -p "$WORK"
CONF="$WORK/lb/lifeboat.toml"
CAPTURE_PID="$WORK/capture.pid"
cap_job=

stop_capture() { # SIGTERM to the capture itself (not to runuser), then wait for it
  if [ -s "$CAPTURE_PID" ]; then kill -TERM "$(cat "$CAPTURE_PID")" 2>/dev/null || true; fi
  rm -f "$CAPTURE_PID"
}
cleanup() {
  if [ -n "$cap_job" ]; then stop_capture; wait "$cap_job" 2>/dev/null || true; fi
  for d in "$WORK"/pitr-*; do
    if [ -f "$d/postmaster.pid" ]; then as_pg "$PGBIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true; fi
  done
  stop_cluster "$WORK/dest"
  stop_cluster "$WORK/pg"
  remove_work
}
trap cleanup EXIT

# q PORT DB SQL: one query, unaligned, no headers.
q() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d "$2" -c "$3"; }

# wait_sql SECONDS WHAT PORT DB SQL: poll SQL (one boolean) every 0.2 s until it is true;
# fail after SECONDS.
wait_sql() {
  local deadline=$((SECONDS + $1))
  until [ "$(q "$3" "$4" "$5" 2>/dev/null)" = t ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then log "gave up after $1 s waiting for $2"; exit 1; fi
    sleep 0.2
  done
}

# logged FILE COMMAND...: run COMMAND with its output in FILE, shown when it fails.
logged() {
  local out=$1; shift
  if ! "$@" >"$out" 2>&1; then
    log "failed: $*"; tail -n 30 "$out" >&2; exit 1
  fi
}

# checksum PORT DB: the pgbench tables' row counts and sums, and the rows of bench_after_t
# (0 at T: its one row is committed after T), one line.
checksum() {
  q "$1" "$2" "SELECT concat_ws(' ',
      (SELECT count(*) FROM pgbench_accounts), (SELECT sum(abalance) FROM pgbench_accounts),
      (SELECT sum(tbalance) FROM pgbench_tellers), (SELECT sum(bbalance) FROM pgbench_branches),
      (SELECT count(*) FROM pgbench_history), (SELECT coalesce(sum(delta), 0) FROM pgbench_history),
      (SELECT count(*) FROM bench_after_t))"
}

# bytes_or_0 DIR: bytes of DIR, 0 when it does not exist.
bytes_or_0() { if [ -d "$1" ]; then bytes "$1"; else echo 0; fi; }

# jget FILE KEY: a top-level value of a JSON file ("?" when absent).
jget() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], "?"))' "$1" "$2"; }

# wait_archived: switch to a new WAL segment and wait until the finished one is archived.
wait_archived() {
  local seg
  seg=$(q "$PORT" pgb "SELECT pg_walfile_name(pg_switch_wal())")
  wait_sql 1800 "WAL segment $seg in the archive" "$PORT" pgb \
    "SELECT coalesce(last_archived_wal >= '$seg', false) FROM pg_stat_archiver"
}

# The binary and the repository belong to the server's user: its archive_command writes
# the repository, so every command that writes it runs as that user (LB); restores run as
# the invoking user, as bench/pitr.sh does (LBR).
cp "$LIFEBOAT" "$WORK/lifeboat"
mkdir -p "$WORK/lb"
echo "bench-password" > "$WORK/lb/password"
DATA="$WORK/pg/data"
URL="postgres://postgres@127.0.0.1:$PORT/pgb"
cat > "$CONF" <<TOML
[repository]
url = "$WORK/lb/repo"
password-file = "$WORK/lb/password"

[targets.pitr]
kind = "postgres"
mode = "physical"
url = "$URL"
data-dir = "$DATA"

[targets.cdc]
kind = "postgres"
mode = "cdc"
url = "$URL"
globals = false
flush-interval = "$FLUSH"
TOML
if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$WORK"; fi
LB=(as_pg "$WORK/lifeboat" -q -c "$CONF")
LBR=("$WORK/lifeboat" -q -c "$CONF")
"${LB[@]}" init >/dev/null

log "source cluster on $PORT: wal_level = logical, WAL archived by lifeboat"
start_cluster "$WORK/pg" "$PORT"
cat >> "$DATA/postgresql.conf" <<SETTINGS
wal_level = logical
archive_mode = on
archive_command = '$WORK/lifeboat -q -c $CONF wal push --target pitr %p'
max_wal_size = '8GB'
SETTINGS
as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w restart -l "$WORK/pg/server.log" >/dev/null
if [ "$CDC_DEST" = scratch ]; then
  log "scratch cluster on $DPORT for the cdc restores"
  start_cluster "$WORK/dest" "$DPORT"
fi

log "pgbench -i -s $SCALE"
q "$PORT" postgres "CREATE DATABASE pgb" >/dev/null
logged "$WORK/pgbench-init.txt" "$PGBIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PORT" -U postgres pgb
# A table written once after T: recovery to a time ends at the first commit past it.
q "$PORT" pgb "CREATE TABLE bench_after_t (id int PRIMARY KEY, at timestamptz)" >/dev/null
logged "$WORK/cdc-check.txt" "${LB[@]}" cdc check cdc --fix

log "physical base backup and cdc baseline"
LSN_BASE=$(q "$PORT" pgb "SELECT pg_current_wal_insert_lsn()")
sync; q "$PORT" pgb "CHECKPOINT" >/dev/null
s=$(now); logged "$WORK/backup-pitr.txt" "${LB[@]}" backup pitr; BACKUP_PITR_S=$(elapsed "$s")
sync; q "$PORT" pgb "CHECKPOINT" >/dev/null
s=$(now); logged "$WORK/backup-cdc.txt" "${LB[@]}" backup cdc; BACKUP_CDC_S=$(elapsed "$s")
wait_archived
WAL_STORED0=$(bytes_or_0 "$WORK/lb/repo/lifeboat/wal")

log "capture, and pgbench -c $CLIENTS -j $THREADS -t $PER_CLIENT ($TXNS transactions, $((TXNS * 4)) changes)"
# Through a shell that writes its own pid and then becomes the capture (exec), so that
# SIGTERM goes to lifeboat itself, not to the runuser between this script and it.
as_pg sh -c 'echo $$ > "$1"; shift; exec "$@"' sh "$CAPTURE_PID" \
  "$WORK/lifeboat" -q -c "$CONF" --json cdc run cdc >"$WORK/capture.json" 2>"$WORK/capture.log" &
cap_job=$!
capture_until() { # SECONDS WHAT SQL: poll SQL (one boolean) until true, the capture alive
  local deadline=$((SECONDS + $1))
  until [ "$(q "$PORT" pgb "$3" 2>/dev/null)" = t ]; do
    if ! kill -0 "$cap_job" 2>/dev/null; then log "the capture stopped:"; tail -n 30 "$WORK/capture.log" >&2; exit 1; fi
    if [ "$SECONDS" -ge "$deadline" ]; then log "gave up after $1 s waiting for $2"; exit 1; fi
    sleep 0.2
  done
}
capture_until 60 "the capture to stream from slot lifeboat_cdc" \
  "SELECT coalesce((SELECT active FROM pg_replication_slots WHERE slot_name = 'lifeboat_cdc'), false)"
LSN_W0=$(q "$PORT" pgb "SELECT pg_current_wal_insert_lsn()")
s=$(now)
logged "$WORK/pgbench.txt" "$PGBIN/pgbench" -n -c "$CLIENTS" -j "$THREADS" -t "$PER_CLIENT" \
  -h 127.0.0.1 -p "$PORT" -U postgres pgb
WORKLOAD_S=$(elapsed "$s")
TPS=$(grep -oE 'tps = [0-9.]+' "$WORK/pgbench.txt" | head -1 | awk '{ printf "%.0f", $3 }')
DONE_TXNS=$(awk -F'[:/ ]+' '/number of transactions actually processed/ { print $(NF-1) }' "$WORK/pgbench.txt")
if [ "$DONE_TXNS" != "$TXNS" ]; then log "pgbench processed ${DONE_TXNS:-?} of $TXNS transactions:"; cat "$WORK/pgbench.txt" >&2; exit 1; fi
LSN_END=$(q "$PORT" pgb "SELECT pg_current_wal_insert_lsn()")

sleep 1
T=$(q "$PORT" pgb "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
SUM_T=$(checksum "$PORT" pgb)   # nothing writes the pgbench tables after the workload
DB_SIZE=$(q "$PORT" pgb "SELECT pg_size_pretty(pg_database_size('pgb'))")
log "T = $T; pgbench tables at T: $SUM_T"
sleep 1
q "$PORT" pgb "INSERT INTO bench_after_t VALUES (1, clock_timestamp())" >/dev/null
wait_archived
WAL_STORED1=$(bytes_or_0 "$WORK/lb/repo/lifeboat/wal")

log "waiting for the capture to confirm $LSN_END"
capture_until 1800 "the capture to confirm $LSN_END" \
  "SELECT coalesce((SELECT confirmed_flush_lsn >= '$LSN_END' FROM pg_replication_slots WHERE slot_name = 'lifeboat_cdc'), false)"
stop_capture
if ! wait "$cap_job"; then log "the capture failed:"; tail -n 30 "$WORK/capture.log" >&2; exit 1; fi
cap_job=
CAPTURED_TXNS=$(jget "$WORK/capture.json" transactions)
CAPTURED_CHANGES=$(jget "$WORK/capture.json" changes)
CDC_STORED=$(bytes_or_0 "$WORK/lb/repo/lifeboat/cdc/cdc")
WAL_BASE_TO_T=$(q "$PORT" pgb "SELECT pg_wal_lsn_diff('$LSN_END', '$LSN_BASE')")
WAL_WORKLOAD=$(q "$PORT" pgb "SELECT pg_wal_lsn_diff('$LSN_END', '$LSN_W0')")

# The restores. Each starts after a CHECKPOINT and sync; the check of the copy is not timed.
restore_physical() { # ROUND
  local dir="$WORK/pitr-$1" s got
  q "$PORT" pgb "CHECKPOINT" >/dev/null; sync
  s=$(now)
  "${LBR[@]}" --json restore pitr --time "$T" --to-dir "$dir" --start --port "$RPORT" --no-archive \
    >"$WORK/restore-pitr-$1.json"
  echo "$(elapsed "$s")" >>"$WORK/t-physical"
  got=$(checksum "$RPORT" pgb)
  as_pg "$PGBIN/pg_ctl" -D "$dir" -m immediate -w stop >/dev/null
  if [ "$got" != "$SUM_T" ]; then log "physical round $1: restored '$got', the source at T '$SUM_T'"; exit 1; fi
  rm -rf "$dir"
  log "physical round $1: $(tail -n 1 "$WORK/t-physical") s, equal to the source at T"
}
restore_cdc() { # ROUND
  local db="restored_$1" s got
  q "$DPORT" postgres "CHECKPOINT" >/dev/null; sync
  s=$(now)
  "${LBR[@]}" --json restore cdc --time "$T" --to "postgres://postgres@127.0.0.1:$DPORT/$db" --jobs "$JOBS" \
    >"$WORK/restore-cdc-$1.json"
  echo "$(elapsed "$s")" >>"$WORK/t-cdc"
  got=$(checksum "$DPORT" "$db")
  q "$DPORT" postgres "DROP DATABASE $db WITH (FORCE)" >/dev/null
  if [ "$got" != "$SUM_T" ]; then log "cdc round $1: restored '$got', the source at T '$SUM_T'"; exit 1; fi
  echo "$(jget "$WORK/restore-cdc-$1.json" restore_seconds)" >>"$WORK/t-cdc-load"
  log "cdc round $1: $(tail -n 1 "$WORK/t-cdc") s (the baseline's load $(tail -n 1 "$WORK/t-cdc-load") s; $(jget "$WORK/restore-cdc-$1.json" replayed_changes) changes replayed), equal to the source at T"
}
: >"$WORK/t-physical"; : >"$WORK/t-cdc"; : >"$WORK/t-cdc-load"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then restore_physical "$round"; restore_cdc "$round"
  else restore_cdc "$round"; restore_physical "$round"; fi
done
median() { sort -g "$1" | awk -v n="$ROUNDS" 'NR == int((n + 1) / 2) { print }'; }
rounds() { paste -sd, "$1" | sed 's/,/, /g'; }
T_PHYS=$(median "$WORK/t-physical"); T_CDC=$(median "$WORK/t-cdc")
RATIO=$(ratio "$T_CDC" "$T_PHYS")
VERDICT=$(awk -v r="$RATIO" 'BEGIN { print (r != "-" && r <= 2.0) ? "met" : "missed" }')
REPLAYED_TXNS=$(jget "$WORK/restore-cdc-1.json" replayed_transactions)
REPLAYED_CHANGES=$(jget "$WORK/restore-cdc-1.json" replayed_changes)
REPLAYED_UNTIL=$(jget "$WORK/restore-cdc-1.json" replayed_until)
for f in "$WORK"/restore-cdc-*.json; do
  if [ "$(jget "$f" replayed_changes)" != "$REPLAYED_CHANGES" ]; then
    log "note: $f replayed $(jget "$f" replayed_changes) changes, round 1 $REPLAYED_CHANGES"
  fi
done
if [ "$REPLAYED_CHANGES" != "$((DONE_TXNS * 4))" ] || [ "$REPLAYED_TXNS" != "$DONE_TXNS" ]; then
  log "note: replayed $REPLAYED_TXNS transactions and $REPLAYED_CHANGES changes; pgbench ran $DONE_TXNS and $((DONE_TXNS * 4))"
fi
PHYS_LAST=$(jget "$WORK/restore-pitr-1.json" last_commit_time)

echo "## CDC restore against physical PITR — $(date -u +%Y-%m-%d) (bench/cdc-restore.sh), $(machine), release build"
echo
echo "One cluster (\`wal_level = logical\`, WAL archived by \`lifeboat wal push\`), one repository, two targets on database \`pgb\`:" \
  "\`pitr\` (\`mode = \"physical\"\`, base backup from the data directory) and \`cdc\` (\`mode = \"cdc\"\`, flush-interval $FLUSH)." \
  "pgbench scale $SCALE ($DB_SIZE at T); after the base backup and the baseline, \`lifeboat cdc run\` captured while" \
  "\`pgbench -n -c $CLIENTS -j $THREADS -t $PER_CLIENT\` ran $DONE_TXNS transactions ($((TXNS * 4)) row changes) in $WORKLOAD_S s ($TPS tps);" \
  "T is 1 s after its end. Both restores go to T: physical \`restore pitr --time T --to-dir DIR --start --port P --no-archive\`" \
  "(timed until the server has recovered to T and promoted), cdc \`restore cdc --time T --to postgres://…/restored_N --jobs $JOBS\`" \
  "into $(if [ "$CDC_DEST" = scratch ]; then echo "a scratch cluster on the same machine (settings as the source's, not archiving)"; else echo "the source cluster"; fi) (timed until replayed and verified). Each copy's pgbench tables (row counts, sums of balances" \
  "and deltas) equal the source's at T. $ROUNDS round(s), alternating which goes first; medians."
echo
echo "| restore to T | median wall s | rounds |"
echo "| --- | ---: | --- |"
echo "| physical PITR: base backup + WAL replay, server promoted | $T_PHYS | $(rounds "$WORK/t-physical") |"
echo "| cdc: baseline + replay of the captured changes | $T_CDC | $(rounds "$WORK/t-cdc") |"
echo "| of which the baseline's load (pg_restore, then row counts) | $(median "$WORK/t-cdc-load") | $(rounds "$WORK/t-cdc-load") |"
echo "| **cdc / physical** | **${RATIO}×** (target ≤ 2×: $VERDICT) | |"
echo
echo "| measure | value |"
echo "| --- | --- |"
echo "| database \`pgb\` at T | $DB_SIZE |"
echo "| physical base backup / cdc baseline (wall) | $BACKUP_PITR_S s / $BACKUP_CDC_S s |"
echo "| WAL from the base backup to T / of the workload alone | $(mib "$WAL_BASE_TO_T") MiB / $(mib "$WAL_WORKLOAD") MiB |"
echo "| WAL archived during the workload (stored in the repository) | $(mib $((WAL_STORED1 - WAL_STORED0))) MiB |"
echo "| captured (\`cdc run\`): transactions, changes, stored | $CAPTURED_TXNS, $CAPTURED_CHANGES, $(mib "$CDC_STORED") MiB |"
echo "| cdc restore replayed: transactions, changes (pgbench: $DONE_TXNS, $((DONE_TXNS * 4))) | $REPLAYED_TXNS, $REPLAYED_CHANGES, the last committed at $REPLAYED_UNTIL |"
echo "| of those changes: folded into the baseline's load / applied by their net effect after it | $(jget "$WORK/restore-cdc-1.json" folded_into_load) / $(jget "$WORK/restore-cdc-1.json" replayed_by_net_effect) |"
echo "| physical recovery: last replayed commit | $PHYS_LAST |"
echo "| source at T (accounts rows, sum abalance, sum tbalance, sum bbalance, history rows, sum delta, bench_after_t rows) | $SUM_T; every copy equal |"
