#!/usr/bin/env bash
# Benchmark: a restore drill against doing it by hand, on the same dump in one run.
#
# `lifeboat drill` of a pgbench database (fetch, throwaway cluster, streamed restore, row
# counts, pg_amcheck, constraint re-validation, teardown) against what an operator does by
# hand: initdb + start a fresh cluster, createdb, `pg_restore` of the same dump from a local
# file (extracted from the repository with restic, which reads lifeboat's repository), stop.
# The hand-run checks nothing; the drill's checks are included in its time.
#
#   bench/drill.sh                     # pgbench scale 50, three alternating rounds
#   PGBENCH_SCALE=5 ROUNDS=1 bench/drill.sh
#
# Prints a Markdown report on stdout (copy it into docs/benchmarks.md).
source "$(dirname "$0")/lib.sh"

PGBENCH_SCALE=${PGBENCH_SCALE:-50}
ROUNDS=${ROUNDS:-3}
WORK=${WORK:-/tmp/lifeboat-bench-drill}
PORT=${PORT:-55433}
HAND_PORT=${HAND_PORT:-55434}

build_lifeboat
bash "$ROOT/scripts/install-deps.sh"

rm -rf "$WORK"; mkdir -p "$WORK"
trap 'stop_cluster "$WORK/pg"; stop_cluster "$WORK/hand"; remove_work' EXIT
start_cluster "$WORK/pg" "$PORT"
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1)

log "generating pgbench scale $PGBENCH_SCALE"
"${PSQL[@]}" -d postgres -c "CREATE DATABASE pgb"
"$PGBIN/pgbench" -i -q -s "$PGBENCH_SCALE" pgb >/dev/null 2>&1

mkdir -p "$WORK/lb" "$WORK/reports"
pgb_config "$WORK/lb" "$PORT" <<TOML
objectives = { rpo = "1h", rto = "15m" }

[[checks]]
target = "pgb"
name = "branches have balances"
sql = "SELECT count(*) FROM pgbench_branches"
expect = "$PGBENCH_SCALE"
TOML
LB=("$LIFEBOAT" -q -c "$WORK/lb/lifeboat.toml")
"${LB[@]}" init >/dev/null
log "lifeboat backup"
"${LB[@]}" backup >/dev/null
log "the same dump as a local file, through restic"
RESTIC_PASSWORD=bench-password restic -r "$WORK/lb/repo" dump -q latest /pgb/db.dump > "$WORK/db.dump"

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
settle() { sync; "${PSQL[@]}" -d postgres -c CHECKPOINT; sleep 1; }

hand_run() {
  rm -rf "$WORK/hand"
  settle
  local s; s=$(now)
  start_cluster "$WORK/hand" "$HAND_PORT"
  "$PGBIN/createdb" -h 127.0.0.1 -p "$HAND_PORT" -U postgres pgb
  "$PGBIN/pg_restore" -h 127.0.0.1 -p "$HAND_PORT" -U postgres --single-transaction --no-owner -d pgb "$WORK/db.dump"
  stop_cluster "$WORK/hand"
  printf 'hand\t%s\n' "$(elapsed "$s")" >> "$RESULTS"
  rm -rf "$WORK/hand"
}

drill() {
  settle
  local s; s=$(now)
  "${LB[@]}" drill --json --report-dir "$WORK/reports" > "$WORK/drill.json"
  printf 'drill\t%s\n' "$(elapsed "$s")" >> "$RESULTS"
  # Phases and RTO as the drill measured them.
  python3 - "$WORK/drill.json" >> "$RESULTS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["drills"][0]["report"]
assert r["verdict"] == "pass", r
for p in r["phases"]:
    print(f"phase {p['name']}\t{p['seconds']:.2f}")
print(f"rto\t{r['rto']['measured-seconds']:.2f}")
PY
}

for round in $(seq "$ROUNDS"); do
  log "round $round"
  if [ $((round % 2)) -eq 1 ]; then hand_run; drill; else drill; hand_run; fi
done

median() {
  awk -F'\t' -v w="$1" '$1 == w { print $2 }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}
all() { awk -F'\t' -v w="$1" '$1 == w { printf "%s%s", sep, $2; sep = ", " }' "$RESULTS"; }

hand=$(median hand); total=$(median drill)
echo "## Drill — $(date -u +%Y-%m-%d), $(machine)"
echo
echo "pgbench scale $PGBENCH_SCALE ($("${PSQL[@]}" -At -d pgb -c "SELECT pg_size_pretty(pg_database_size('pgb'))")," \
  "dump $(mib "$(bytes "$WORK/db.dump")") MiB); $ROUNDS alternating rounds, medians."
echo
echo "| step | median s | rounds |"
echo "| --- | ---: | --- |"
echo "| by hand: initdb + start + createdb + pg_restore (local file) + stop | $hand | $(all hand) |"
echo "| \`lifeboat drill\`, whole process | $total | $(all drill) |"
for p in fetch provision restore checks teardown; do
  echo "| · phase $p | $(median "phase $p") | $(all "phase $p") |"
done
echo "| · RTO as measured by the drill (start → verified) | $(median rto) | $(all rto) |"
echo
echo "Drill total $(ratio "$total" "$hand")× the hand-run restore (target ≤ 1.3×), checks included."
