#!/usr/bin/env bash
# Benchmark (issue 22): change capture of a `mode = "cdc"` target on the release build.
#   1. live: `lifeboat cdc run` beside `pgbench -c 4` for $LIVE seconds — the capture's lag
#      behind the server (sampled every 0.1 s: how long ago the server's WAL insert position
#      was where the slot's confirmed position is now) and its CPU;
#   2. backlog: the capture stopped while `pgbench -c 4` runs $BACKLOG seconds, then started:
#      changes stored per second until it has caught up;
#   3. restore: `restore --to` a new database (the baseline, then every captured change).
# Targets: lag p99 ≤ 1 s, CPU ≤ 15 % of one core; backlog ≥ 50,000 changes/s.
#
#   bench/cdc.sh                 # scale 10, 60 s live, 30 s backlog
#   SCALE=5 LIVE=20 BACKLOG=10 FLUSH=500ms bench/cdc.sh
source "$(dirname "$0")/lib.sh"

SCALE=${SCALE:-10}
LIVE=${LIVE:-60}
BACKLOG=${BACKLOG:-30}
WORK=${WORK:-/tmp/lifeboat-bench-cdc}
PORT=${PORT:-59320}

build_lifeboat
rm -rf "$WORK"; mkdir -p "$WORK"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; stop_cluster "$WORK/pg"; remove_work' EXIT

start_cluster "$WORK/pg" "$PORT"
as_pg "$PGBIN/psql" -X -q -h "$WORK/pg" -p "$PORT" -U postgres -c "ALTER SYSTEM SET wal_level = logical" >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/server.log" -w restart >/dev/null
PSQL=("$PGBIN/psql" -X -q -A -t -h 127.0.0.1 -p "$PORT" -U postgres)
"${PSQL[@]}" -c "CREATE DATABASE pgb" >/dev/null
"$PGBIN/pgbench" -q -i -s "$SCALE" -h 127.0.0.1 -p "$PORT" -U postgres pgb >/dev/null 2>&1

pgb_config "$WORK" "$PORT" <<TOML
mode = "cdc"
flush-interval = "${FLUSH:-1s}"
TOML
LB=("$LIFEBOAT" -q -c "$WORK/lifeboat.toml")
"${LB[@]}" init >/dev/null
"${LB[@]}" cdc check pgb --fix >/dev/null
"${LB[@]}" backup pgb >/dev/null

echo "## lifeboat cdc: pgbench scale $SCALE, -c 4, flush-interval ${FLUSH:-1s} ($(date -u +%Y-%m-%d), $(nproc) cores, PostgreSQL $("${PSQL[@]}" -c 'SHOW server_version' pgb))"
echo

# 1. live
"${LB[@]}" --json cdc run pgb >"$WORK/live.json" 2>"$WORK/live.log" &
cap=$!; pids+=("$cap")
sleep 2
"$PGBIN/pgbench" -n -c 4 -j 2 -T "$LIVE" -h 127.0.0.1 -p "$PORT" -U postgres pgb >"$WORK/pgbench-live.txt" 2>&1 &
bench=$!; pids+=("$bench")
python3 - "$cap" "$PORT" "$LIVE" >"$WORK/live.txt" <<'PY'
import os, subprocess, sys, time
pid, port, seconds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
hz = os.sysconf("SC_CLK_TCK")
def cpu():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])
def q(sql):
    return subprocess.run(["psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "pgb", "-c", sql],
                          capture_output=True, text=True).stdout.strip()
def num(lsn):
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)
history, lags = [], []
t0, c0 = time.time(), cpu()
while time.time() - t0 < seconds:
    row = q("SELECT pg_current_wal_insert_lsn(), (SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'lifeboat_pgb')")
    now = time.time()
    ins, conf = row.split("|")
    history.append((now, num(ins)))
    c = num(conf)
    # when the server's insert position was where the slot is confirmed now
    since = next((t for t, l in history if l >= c), now)
    lags.append(now - since)
    time.sleep(0.1)
used = (cpu() - c0) / hz
wall = time.time() - t0
lags.sort()
p = lambda x: lags[min(len(lags) - 1, int(round(x / 100 * (len(lags) - 1))))]
print(f"{p(50):.2f} {p(99):.2f} {lags[-1]:.2f} {100 * used / wall:.1f} {len(lags)}")
PY
wait "$bench" || true
tps=$(grep -oE 'tps = [0-9.]+' "$WORK/pgbench-live.txt" | head -1 | awk '{print $3}')
kill -TERM "$cap"; wait "$cap" || true
read -r lag50 lag99 lagmax cpu samples <"$WORK/live.txt"
live_changes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["changes"])' "$WORK/live.json")

# 2. backlog
"$PGBIN/pgbench" -n -c 4 -j 2 -T "$BACKLOG" -h 127.0.0.1 -p "$PORT" -U postgres pgb >"$WORK/pgbench-backlog.txt" 2>&1
target_lsn=$("${PSQL[@]}" -c "SELECT pg_current_wal_insert_lsn()" pgb)
start=$(now)
"${LB[@]}" --json cdc run pgb >"$WORK/backlog.json" 2>"$WORK/backlog.log" &
cap=$!; pids+=("$cap")
until [ "$("${PSQL[@]}" -c "SELECT confirmed_flush_lsn >= '$target_lsn' FROM pg_replication_slots WHERE slot_name = 'lifeboat_pgb'" pgb)" = "t" ]; do
  sleep 0.2
done
drain=$(elapsed "$start")
kill -TERM "$cap"; wait "$cap" || true
backlog_changes=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["changes"])' "$WORK/backlog.json")

# 3. restore
start=$(now)
"${LB[@]}" restore pgb --to "postgres://postgres@127.0.0.1:$PORT/restored" >"$WORK/restore.txt" 2>&1
restore_s=$(elapsed "$start")
src=$("${PSQL[@]}" -c "SELECT sum(abalance) || ' ' || count(*) FROM pgbench_accounts" pgb)
dst=$("${PSQL[@]}" -c "SELECT sum(abalance) || ' ' || count(*) FROM pgbench_accounts" restored)

echo "| measure | value | target |"
echo "|---|---|---|"
echo "| live: pgbench -c 4 for ${LIVE} s | ${tps} tps, ${live_changes} changes stored | |"
echo "| live: capture lag (p50 / p99 / max, ${samples} samples) | ${lag50} s / ${lag99} s / ${lagmax} s | p99 ≤ 1 s |"
echo "| live: capture CPU | ${cpu} % of one core | ≤ 15 % |"
echo "| backlog: ${backlog_changes} changes after ${BACKLOG} s stopped, drained in | ${drain} s ($(ratio "$backlog_changes" "$drain" | cut -d. -f1) changes/s) | ≥ 50,000 changes/s |"
echo "| restore (baseline + every change) | ${restore_s} s | |"
echo "| restored pgbench_accounts (sum, rows) vs source | ${dst} vs ${src} | equal |"
