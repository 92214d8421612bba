# Shared helpers for the benchmark scripts: a throwaway PostgreSQL cluster, timing, sizes.
# Sourced, not run.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
LIFEBOAT="$ROOT/target/release/lifeboat"

# The release binary, built now (a no-op when fresh) so a run never measures a stale one.
build_lifeboat() {
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
  echo "$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(. /etc/os-release; echo "$PRETTY_NAME"), PostgreSQL $("$PGBIN/postgres" --version | awk '{ print $3 }'), restic $(restic version | awk '{ print $2 }')"
}
