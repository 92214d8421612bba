# Shared helpers for the benchmark scripts: a throwaway PostgreSQL cluster, timing, sizes.
# Sourced, not run.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
# LIFEBOAT_BIN=path measures that binary as it is (e.g. one built before a change).
LIFEBOAT=${LIFEBOAT_BIN:-$ROOT/target/release/lifeboat}

# The release binary, built now (a no-op when fresh) so a run never measures a stale one.
build_lifeboat() {
  [ -n "${LIFEBOAT_BIN:-}" ] && return
  cargo build --release --locked -p lifeboat --manifest-path "$ROOT/Cargo.toml" >&2
}

# At exit the scratch folder $WORK (gigabytes) goes, unless KEEP_WORK=1.
remove_work() {
  [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"
}

# Run a server tool as the postgres user when we are root (initdb refuses root).
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_cluster DIR PORT: initdb + start with settings fit for benchmarks.
start_cluster() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
  as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >/dev/null
  cat >> "$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
shared_buffers = '512MB'
maintenance_work_mem = '256MB'
max_wal_size = '4GB'
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
}

stop_cluster() {
  as_pg "$PGBIN/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null 2>&1 || true
}

# pgb_config DIR PORT: in DIR, the repository's password, the URL of database `pgb` on the
# cluster at PORT, and lifeboat.toml with the repository (DIR/repo) and the postgres target
# `pgb`; TOML on stdin is appended (keys of `pgb` first, then more tables).
pgb_config() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  echo "bench-password" > "$dir/password"
  echo "postgres://postgres@127.0.0.1:$port/pgb" > "$dir/pgb.url"
  {
    cat <<TOML
[repository]
url = "$dir/repo"
password-file = "$dir/password"

[targets.pgb]
kind = "postgres"
url-file = "$dir/pgb.url"
globals = false
TOML
    cat
  } > "$dir/lifeboat.toml"
}

# start_serve CONFIG PORT LOG: `lifeboat serve` in the background ($serve_pid), returning
# once it answers /healthz (or after 10 s).
start_serve() {
  "$LIFEBOAT" -q -c "$1" serve --listen "127.0.0.1:$2" 2>"$3" &
  serve_pid=$!
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$2/healthz" >/dev/null 2>&1 && return
    sleep 0.1
  done
}

# now: seconds with nanoseconds.
now() { date +%s.%N; }

# elapsed START: seconds since START, 2 decimals.
elapsed() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.2f", e - s }'; }

# ratio A B: A / B with 2 decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'; }

# bytes PATH: apparent size in bytes of a file or folder.
bytes() { du -sb "$1" | cut -f1; }

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

machine() {
  echo "$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(. /etc/os-release; echo "$PRETTY_NAME"), PostgreSQL $("$PGBIN/postgres" --version | awk '{ print $3 }')$(if command -v restic >/dev/null; then echo ", restic $(restic version | awk '{ print $2 }')"; fi)"
}

# archiving_cluster DIR PORT: start_cluster, then archive_mode on with archiving failing
# (`/bin/false`) until set_archive says otherwise.
archiving_cluster() {
  start_cluster "$1" "$2"
  cat >> "$1/data/postgresql.conf" <<CONF
wal_level = replica
archive_mode = on
archive_command = '/bin/false'
max_wal_senders = 5
max_wal_size = '8GB'
CONF
  as_pg "$PGBIN/pg_ctl" -D "$1/data" -m fast -w restart -l "$1/server.log" >/dev/null
}

# lifeboat_and_pgbackrest: a lifeboat repository (physical target `db`) and a pgBackRest
# stanza (`bench`: zstd 3, process-max 2, async archive-push) for the cluster at $DATA on
# $PORT, under $WORK. Sets LB and PGBR (commands as the postgres user) and LB_PUSH and
# PGBR_PUSH (archive commands). Needs $WORK/lifeboat.
lifeboat_and_pgbackrest() {
  mkdir -p "$WORK/lb" "$WORK/pgbr"/{repo,spool,log,lock}
  echo "bench-password" > "$WORK/lb/password"
  cat > "$WORK/lb/lifeboat.toml" <<TOML
[repository]
url = "$WORK/lb/repo"
password-file = "$WORK/lb/password"

[targets.db]
kind = "postgres"
mode = "physical"
url = "postgres://postgres@127.0.0.1:$PORT/postgres"
data-dir = "$DATA"
TOML
  cat > "$WORK/pgbr/pgbackrest.conf" <<CONF
[global]
repo1-path=$WORK/pgbr/repo
repo1-retention-full=10
compress-type=zst
compress-level=3
process-max=2
start-fast=y
archive-async=y
spool-path=$WORK/pgbr/spool
log-path=$WORK/pgbr/log
lock-path=$WORK/pgbr/lock
log-level-console=warn

[bench]
pg1-path=$DATA
pg1-port=$PORT
pg1-socket-path=$(dirname "$DATA")
CONF
  [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$WORK"
  LB=(as_pg "$WORK/lifeboat" -q -c "$WORK/lb/lifeboat.toml")
  PGBR=(as_pg pgbackrest --config="$WORK/pgbr/pgbackrest.conf" --stanza=bench)
  "${LB[@]}" init >/dev/null
  "${PGBR[@]}" stanza-create >/dev/null
  LB_PUSH="$WORK/lifeboat -q -c $WORK/lb/lifeboat.toml wal push %p"
  PGBR_PUSH="pgbackrest --config=$WORK/pgbr/pgbackrest.conf --stanza=bench archive-push %p"
}

# archiving_bench: the setup bench/pitr.sh and bench/archive-backlog.sh share: the binary
# copied into $WORK (the server's user runs it), an archiving cluster at $WORK/pg on
# $PORT (sets DATA, PSQL and the libpq environment), lifeboat and pgBackRest beside it.
archiving_bench() {
  cp "$LIFEBOAT" "$WORK/lifeboat"
  DATA="$WORK/pg/data"
  archiving_cluster "$WORK/pg" "$PORT"
  export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
  PSQL=("$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -d postgres)
  lifeboat_and_pgbackrest
}

# set_archive COMMAND: the cluster's archive_command, reloaded (uses PSQL).
set_archive() {
  "${PSQL[@]}" -c "ALTER SYSTEM SET archive_command = '$1'" -c "SELECT pg_reload_conf()" >/dev/null
}

# ready: how many WAL files of $DATA wait to be archived.
ready() { ls "$DATA/pg_wal/archive_status" | grep -c '\.ready$' || true; }

log() { echo "[$(date +%T)] $*" >&2; }

# app_dataset SCALE PSQL...: the database `app` of a SaaS — users, images with URLs and JSON
# metadata, an insert-only credit ledger, posts with text bodies — made with the psql
# command PSQL... (scale 1: about 1 GB; the same data every time).
app_dataset() {
  local scale=$1; shift
  "$@" -d postgres -c "CREATE DATABASE app"
  "$@" -d app -v scale="$scale" <<'SQL'
SELECT setseed(0.42);
CREATE TABLE words AS SELECT w, row_number() OVER () AS n FROM unnest(string_to_array(
 'the of and to in is you that it he was for on are as with his they at be this have from or one had by word but not what all were we when your can said there use an each which she do how their if will up other about out many then them these so some her would make like him into time has look two more write go see number no way could people my than first water been call who oil its now find long down day did get come made may part over new sound take only little work know place year live me back give most very after thing our just name good sentence man think say great where help through much before line right too mean old any same tell boy follow came want show also around form three small set put end does another well large must big even such because turn here why ask went men read need land different home us move try kind hand picture again change off play spell air away animal house point page letter mother answer found study still learn should america world invoice payment refund subscription upload image avatar credit balance order customer shipment'
 , ' ')) AS w;
SELECT count(*) AS nw FROM words \gset
CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, name text NOT NULL, plan text NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO users SELECT i, 'user' || i || '@' || (ARRAY['gmail.com','example.com','proton.me','company.io'])[1 + i % 4],
  initcap((SELECT w FROM words WHERE n = 1 + (i * 7) % :nw)) || ' ' || initcap((SELECT w FROM words WHERE n = 1 + (i * 13) % :nw)),
  (ARRAY['free','pro','team'])[1 + (i % 7) % 3], timestamptz '2024-01-01' + (i * interval '37 seconds')
  FROM generate_series(1::bigint, (400000 * :scale)::bigint) i;
CREATE TABLE images (id bigint PRIMARY KEY, user_id bigint NOT NULL, url text NOT NULL, metadata jsonb NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO images SELECT i, 1 + (i * 31) % (400000 * :scale)::int,
  'https://media.example.com/u/' || (1 + (i * 31) % 400000) || '/' || md5(i::text) || '.jpg',
  jsonb_build_object('width', 320 + (i * 17) % 1600, 'height', 240 + (i * 13) % 1200, 'bytes', 20000 + (i * 7919) % 4000000,
                     'mime', 'image/jpeg', 'exif', jsonb_build_object('camera', 'cam-' || (i % 37), 'iso', 100 * (1 + i % 32))),
  timestamptz '2024-01-01' + (i * interval '11 seconds')
  FROM generate_series(1::bigint, (1500000 * :scale)::bigint) i;
CREATE TABLE credit_ledger (id bigint PRIMARY KEY, user_id bigint NOT NULL, amount integer NOT NULL, reason text NOT NULL, ref text NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO credit_ledger SELECT i, 1 + (i * 7) % (400000 * :scale)::int, CASE WHEN i % 5 = 0 THEN -(i % 300) ELSE i % 500 END,
  (ARRAY['purchase','bonus','refund','usage','referral'])[1 + i % 5], md5((i * 3)::text), timestamptz '2024-01-01' + (i * interval '3 seconds')
  FROM generate_series(1::bigint, (4000000 * :scale)::bigint) i;
CREATE TABLE posts (id bigint PRIMARY KEY, user_id bigint NOT NULL, title text NOT NULL, body text NOT NULL);
INSERT INTO posts SELECT i, 1 + i % (400000 * :scale)::int,
  (SELECT string_agg(w, ' ') FROM words WHERE n IN (1 + (i * 3) % :nw, 1 + (i * 5) % :nw, 1 + (i * 11) % :nw)),
  (SELECT string_agg(w, ' ' ORDER BY hashint8(i * 1000 + g)) FROM generate_series(1, 60) g JOIN words ON n = 1 + abs(hashint8(i * 100 + g)) % :nw)
  FROM generate_series(1::bigint, (600000 * :scale)::bigint) i;
VACUUM ANALYZE;
SQL
}

# measure ROUND STEP TOOL PATH CMD...: wall and CPU seconds (user + system, children
# included) of CMD after a `sync`, and the size of PATH after it, as a line of $TSV
# (round, step, tool, wall, CPU, bytes). Needs $WORK and $TSV.
measure() {
  local round=$1 step=$2 tool=$3 path=$4; shift 4
  sync
  /usr/bin/time -o "$WORK/time" -f "%e %U %S" "$@" >/dev/null 2>"$WORK/stderr" ||
    { cat "$WORK/stderr" >&2; echo "failed: $tool $step (round $round)" >&2; exit 1; }
  tail -n 1 "$WORK/time" | awk -v r="$round" -v s="$step" -v t="$tool" -v b="$(bytes "$path")" \
    '{ printf "%s\t%s\t%s\t%.2f\t%.2f\t%s\n", r, s, t, $1, $2 + $3, b }' >> "$TSV"
}
