#!/usr/bin/env bash
# Benchmark: a repository on an S3 server on this machine (moto, in memory, by default;
# S3_SERVER=s3s-fs for s3s-fs, objects in a folder), lifeboat against restic and rclone on
# the same data in one run.
#
#   1. a database dump: `lifeboat backup` of a PostgreSQL target (pg_dump streamed into the
#      repository) vs `pg_dump | restic backup --stdin`; restore: `lifeboat restore` into a
#      new database vs `restic dump | pg_restore`.
#   2. a bucket of many objects: `lifeboat backup` of a bucket target vs `restic backup` of
#      the same files from local disk (restic cannot read a bucket: its best case) and
#      `rclone copy` bucket to bucket (a server-side copy: the cost of a plain copy on the
#      same server, not a throughput peer of a backup); restore: `lifeboat restore --to s3://...` vs
#      `restic restore` to local disk and `rclone copy` back. And the way a runbook does it
#      with restic, which cannot read or write a bucket: `rclone copy` the bucket to local
#      disk, then `restic backup`; `restic restore`, then `rclone copy` into a bucket.
#
#   bench/s3.sh                                    # pgbench scale 100 (~1 GB dump), 10k x 100 KiB
#   DB_SCALE=10 OBJECTS=1000 bench/s3.sh           # a quick run
#   S3_SERVER=s3s-fs bench/s3.sh                   # against s3s-fs (a Rust server) instead
#
# Each step's CPU seconds are reported too, the tool's own and the S3 server's: on one
# machine they share the cores, and serving 10,000 GETs costs the server far more than a
# backup from local disk costs it.
#
# Prints a Markdown report on stdout (copy it into docs/benchmarks.md).
source "$(dirname "$0")/lib.sh"

DB_SCALE=${DB_SCALE:-100}
OBJECTS=${OBJECTS:-10000}
OBJECT_KIB=${OBJECT_KIB:-100}
WORK=${WORK:-/tmp/lifeboat-bench-s3}
PORT=${PORT:-55442}
S3PORT=${S3PORT:-55443}
S3_SERVER=${S3_SERVER:-moto}

build_lifeboat
bash "$ROOT/scripts/install-deps.sh"
command -v rclone >/dev/null || { echo "installing rclone" >&2; apt-get install -y -qq rclone >/dev/null; }

rm -rf "$WORK"; mkdir -p "$WORK"
BUCKETS=(lbrepo resticrepo media rclonedst lbrestore rcloneup)
case "$S3_SERVER" in
  moto)
    python3 -m moto.server -H 127.0.0.1 -p "$S3PORT" > "$WORK/s3.log" 2>&1 &
    SERVER_TEXT="moto $(python3 -m pip show moto 2>/dev/null | awk '/^Version/ { print $2 }') (S3 in memory, same machine)" ;;
  s3s-fs)
    for b in "${BUCKETS[@]}"; do mkdir -p "$WORK/s3s/$b"; done
    PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin" s3s-fs --host 127.0.0.1 --port "$S3PORT" \
      --access-key bench --secret-key bench "$WORK/s3s" > "$WORK/s3.log" 2>&1 &
    SERVER_TEXT="s3s-fs 0.14.1 (S3 in Rust, objects in a folder on the same disk)" ;;
  *) echo "S3_SERVER is moto or s3s-fs" >&2; exit 2 ;;
esac
S3PID=$!
trap 'stop_cluster "$WORK/pg"; kill $S3PID 2>/dev/null || true; remove_work' EXIT
start_cluster "$WORK/pg" "$PORT"
until curl -s -o /dev/null "http://127.0.0.1:$S3PORT/"; do sleep 0.2; done
ENDPOINT="http://127.0.0.1:$S3PORT"
if [ "$S3_SERVER" = moto ]; then
  for b in "${BUCKETS[@]}"; do curl -s -o /dev/null -X PUT "$ENDPOINT/$b"; done
fi
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
# rclone 1.60 fails on a custom CA bundle ("HTTPClient's transport unsupported type");
# the server here is plain HTTP.
unset AWS_CA_BUNDLE
export RCLONE_CONFIG_MOTO_TYPE=s3 RCLONE_CONFIG_MOTO_PROVIDER=Other \
  RCLONE_CONFIG_MOTO_ENDPOINT="$ENDPOINT" RCLONE_CONFIG_MOTO_ACCESS_KEY_ID=bench \
  RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY=bench RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE=true
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1)
echo "bench" > "$WORK/password"
export RESTIC_PASSWORD_FILE="$WORK/password" RESTIC_REPOSITORY="s3:$ENDPOINT/resticrepo"

log "generating pgbench scale $DB_SCALE"
"${PSQL[@]}" -d postgres -c "CREATE DATABASE pgb"
"$PGBIN/pgbench" -i -q -s "$DB_SCALE" pgb >/dev/null 2>&1
DUMP_BYTES=$("$PGBIN/pg_dump" -Fc -Z0 pgb | wc -c)

log "generating $OBJECTS objects of $OBJECT_KIB KiB and uploading them with rclone"
mkdir -p "$WORK/objects"
python3 - "$WORK/objects" "$OBJECTS" "$OBJECT_KIB" <<'PY'
import os, sys
root, n, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    d = os.path.join(root, "img", "%03d" % (i % 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "%d.jpg" % i), "wb") as f:
        f.write(os.urandom(kib * 1024))
PY
BUCKET_BYTES=$(bytes "$WORK/objects")
rclone copy --transfers 8 "$WORK/objects" moto:media

cat > "$WORK/lifeboat.toml" <<CONF
[repository]
url = "s3://lbrepo/repo"
endpoint = "$ENDPOINT"
path-style = true
password-file = "$WORK/password"

[targets.db]
kind = "postgres"
url = "postgres://postgres@127.0.0.1:$PORT/pgb"

[targets.media]
kind = "bucket"
url = "s3://media"
CONF
LB=("$LIFEBOAT" -q -c "$WORK/lifeboat.toml")
"${LB[@]}" init >/dev/null
restic init >/dev/null 2>&1

# cpu_of PID FIELD...: CPU seconds in those fields of /proc/PID/stat: 14 15 what the process
# has used itself (all its threads), 16 17 what its children it waited for have used.
cpu_of() {
  local pid=$1; shift
  awk -v hz="$(getconf CLK_TCK)" -v f="$*" \
    '{ n = split(f, a, " "); s = 0; for (i = 1; i <= n; i++) s += $a[i]; printf "%.2f", s / hz }' "/proc/$pid/stat"
}
# t NAME CMD...: run CMD, print its wall seconds; keep in $WORK/cpu.NAME the CPU seconds it
# used and those the S3 server used meanwhile (on this machine they share the cores).
t() {
  local name=$1 me=$BASHPID s c0 s0 e; shift
  c0=$(cpu_of "$me" 16 17); s0=$(cpu_of "$S3PID" 14 15); s=$(now)
  "$@" >/dev/null 2>"$WORK/last.err" || { cat "$WORK/last.err" >&2; exit 1; }
  e=$(elapsed "$s")
  echo "$(awk -v a="$c0" -v b="$(cpu_of "$me" 16 17)" 'BEGIN { printf "%.1f", b - a }') $(awk -v a="$s0" -v b="$(cpu_of "$S3PID" 14 15)" 'BEGIN { printf "%.1f", b - a }')" > "$WORK/cpu.$name"
  echo "$e"
}
# cpu NAME: "tool CPU s / server CPU s" of the step NAME.
cpu() { awk '{ printf "%s / %s", $1, $2 }' "$WORK/cpu.$1"; }
mbs() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1048576 / s }'; }

log "database dump: backups"
LB_DB_B=$(t lb_db_b "${LB[@]}" backup db)
RESTIC_DB_B=$(t restic_db_b bash -c "'$PGBIN/pg_dump' -Fc -Z0 pgb | restic backup --stdin --stdin-filename pgb.dump")
log "database dump: restores"
"${PSQL[@]}" -d postgres -c "CREATE DATABASE r1" -c "CREATE DATABASE r2"
LB_DB_R=$(t lb_db_r "${LB[@]}" restore db --to "postgres://postgres@127.0.0.1:$PORT/r1")
RESTIC_DB_R=$(t restic_db_r bash -c "restic dump latest /pgb.dump | '$PGBIN/pg_restore' --no-owner -d r2")

log "bucket: backups"
LB_BK_B=$(t lb_bk_b "${LB[@]}" backup media)
RESTIC_BK_B=$(t restic_bk_b restic backup "$WORK/objects")
RCLONE_BK_B=$(t rclone_bk_b rclone copy --transfers 8 moto:media moto:rclonedst)
log "bucket: a second backup with nothing changed"
LB_BK_B2=$(t lb_bk_b2 "${LB[@]}" backup media)
RESTIC_BK_B2=$(t restic_bk_b2 restic backup "$WORK/objects")
RCLONE_BK_B2=$(t rclone_bk_b2 rclone copy --transfers 8 moto:media moto:rclonedst)
log "bucket: restores"
LB_BK_R=$(t lb_bk_r "${LB[@]}" restore media --to s3://lbrestore)
RESTIC_BK_R=$(t restic_bk_r restic restore latest --target "$WORK/restic-restore")
RCLONE_BK_R=$(t rclone_bk_r rclone copy --transfers 8 moto:rclonedst "$WORK/rclone-restore")
RCLONE_UP=$(t rclone_up rclone copy --transfers 8 "$WORK/restic-restore$WORK/objects" moto:rcloneup)
# The runbook way: the bucket to local disk with rclone, then restic; and back.
RR_BK_B=$(awk -v a="$RCLONE_BK_R" -v b="$RESTIC_BK_B" 'BEGIN { printf "%.2f", a + b }')
RR_BK_R=$(awk -v a="$RESTIC_BK_R" -v b="$RCLONE_UP" 'BEGIN { printf "%.2f", a + b }')

cat <<MD
### S3 repository on $S3_SERVER (bench/s3.sh), $(date -u +%Y-%m-%d)

Machine: $(machine), rclone $(rclone version | awk 'NR==1 { print $2 }'), $SERVER_TEXT.
Database: pgbench scale $DB_SCALE, \`pg_dump -Fc -Z0\` of $(mib "$DUMP_BYTES") MiB. Bucket: $OBJECTS objects of $OBJECT_KIB KiB (random, $(mib "$BUCKET_BYTES") MiB).

| what | lifeboat | restic | rclone | restic + rclone | lifeboat ÷ restic throughput | lifeboat ÷ (restic + rclone) |
| --- | --- | --- | --- | --- | --- | --- |
| dump backup (pg_dump streamed) | $LB_DB_B s, $(mbs "$DUMP_BYTES" "$LB_DB_B") MB/s | $RESTIC_DB_B s, $(mbs "$DUMP_BYTES" "$RESTIC_DB_B") MB/s | — | — | $(ratio "$RESTIC_DB_B" "$LB_DB_B")× | — |
| dump restore (into pg_restore) | $LB_DB_R s, $(mbs "$DUMP_BYTES" "$LB_DB_R") MB/s | $RESTIC_DB_R s, $(mbs "$DUMP_BYTES" "$RESTIC_DB_R") MB/s | — | — | $(ratio "$RESTIC_DB_R" "$LB_DB_R")× | — |
| bucket backup (restic: from local disk; rclone: bucket → bucket; restic + rclone: bucket → disk, then restic) | $LB_BK_B s, $(mbs "$BUCKET_BYTES" "$LB_BK_B") MB/s | $RESTIC_BK_B s, $(mbs "$BUCKET_BYTES" "$RESTIC_BK_B") MB/s | $RCLONE_BK_B s, $(mbs "$BUCKET_BYTES" "$RCLONE_BK_B") MB/s | $RR_BK_B s, $(mbs "$BUCKET_BYTES" "$RR_BK_B") MB/s | $(ratio "$RESTIC_BK_B" "$LB_BK_B")× | $(ratio "$RR_BK_B" "$LB_BK_B")× |
| bucket backup again, nothing changed | $LB_BK_B2 s | $RESTIC_BK_B2 s | $RCLONE_BK_B2 s | — | $(ratio "$RESTIC_BK_B2" "$LB_BK_B2")× | — |
| bucket restore (lifeboat: into a bucket; restic, rclone: to local disk; restic + rclone: restic restore, then into a bucket) | $LB_BK_R s, $(mbs "$BUCKET_BYTES" "$LB_BK_R") MB/s | $RESTIC_BK_R s, $(mbs "$BUCKET_BYTES" "$RESTIC_BK_R") MB/s | $RCLONE_BK_R s, $(mbs "$BUCKET_BYTES" "$RCLONE_BK_R") MB/s | $RR_BK_R s, $(mbs "$BUCKET_BYTES" "$RR_BK_R") MB/s | $(ratio "$RESTIC_BK_R" "$LB_BK_R")× | $(ratio "$RR_BK_R" "$LB_BK_R")× |

CPU seconds of each step: the tool's own (with what it ran: pg_dump, pg_restore) / the S3
server's, which runs on the same cores.

| what | lifeboat | restic | rclone |
| --- | --- | --- | --- |
| dump backup | $(cpu lb_db_b) | $(cpu restic_db_b) | — |
| dump restore | $(cpu lb_db_r) | $(cpu restic_db_r) | — |
| bucket backup | $(cpu lb_bk_b) | $(cpu restic_bk_b) | $(cpu rclone_bk_b) |
| bucket backup again | $(cpu lb_bk_b2) | $(cpu restic_bk_b2) | $(cpu rclone_bk_b2) |
| bucket restore | $(cpu lb_bk_r) | $(cpu restic_bk_r) | $(cpu rclone_bk_r) (to disk); $(cpu rclone_up) (up) |
MD
