#!/usr/bin/env bash
# Benchmark (issue 20): the cost of probes in `lifeboat serve` — 100 probes at 10 s
# intervals (25 PostgreSQL, 25 Redis, 25 HTTP, 25 TCP, against local servers), plus two
# probes that always time out (an HTTP server that never answers, timeout 1 s; a TCP
# connect to a port whose backlog is full, so its SYNs are dropped, timeout 2 s). Measures, on the release build:
# serve's CPU while only probes run (target ≤ 2% of one core) and how far past its
# timeout each timing-out run ends (target ≤ 100 ms).
#
#   bench/probes.sh                  # 3 minutes
#   MINUTES=1 bench/probes.sh
#
# Prints a Markdown table on stdout; serve's log in $WORK/serve.log (KEEP_WORK=1 keeps it).
source "$(dirname "$0")/lib.sh"

MINUTES=${MINUTES:-3}
WORK=${WORK:-/tmp/lifeboat-bench-probes}
PORT=${PORT:-59310}
HTTP_PORT=${HTTP_PORT:-59311}
HANG_PORT=${HANG_PORT:-59312}
REDIS_PORT=${REDIS_PORT:-59313}
PG_PORT=${PG_PORT:-59314}
FULL_PORT=${FULL_PORT:-59315}

build_lifeboat
rm -rf "$WORK"; mkdir -p "$WORK"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; stop_cluster "$WORK/pg"; remove_work' EXIT

# An HTTP server answering 200, and one that accepts and never answers.
python3 - "$HTTP_PORT" "$HANG_PORT" "$FULL_PORT" >"$WORK/http.log" 2>&1 <<'PY' &
import http.server, socket, sys, threading, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a): pass
hang = socket.socket(); hang.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
hang.bind(("127.0.0.1", int(sys.argv[2]))); hang.listen(100)
held = []
def accept():
    while True:
        held.append(hang.accept()[0])
threading.Thread(target=accept, daemon=True).start()
# A port that never completes a connection: a backlog of one, never accepted, filled.
full = socket.socket(); full.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
full.bind(("127.0.0.1", int(sys.argv[3]))); full.listen(0)
fillers = []
for _ in range(4):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(("127.0.0.1", int(sys.argv[3])))
    except BlockingIOError: pass
    fillers.append(c)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
pids+=($!)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
pids+=($!)
start_cluster "$WORK/pg" "$PG_PORT"

export LIFEBOAT_PASSWORD=bench-password
{
  printf '[repository]\nurl = "%s"\n\n' "$WORK/repo"
  for i in $(seq 1 25); do
    printf '[[probes]]\nname = "pg%s"\nkind = "postgres"\nurl = "postgres://postgres@127.0.0.1:%s/postgres"\ninterval = "10s"\n\n' "$i" "$PG_PORT"
    printf '[[probes]]\nname = "redis%s"\nkind = "redis"\nurl = "redis://127.0.0.1:%s"\ninterval = "10s"\n\n' "$i" "$REDIS_PORT"
    printf '[[probes]]\nname = "http%s"\nkind = "http"\nurl = "http://127.0.0.1:%s/health"\ninterval = "10s"\n\n' "$i" "$HTTP_PORT"
    printf '[[probes]]\nname = "tcp%s"\nkind = "tcp"\nurl = "127.0.0.1:%s"\ninterval = "10s"\n\n' "$i" "$HTTP_PORT"
  done
  printf '[[probes]]\nname = "hang-http"\nkind = "http"\nurl = "http://127.0.0.1:%s/"\ninterval = "3s"\ntimeout = "1s"\n\n' "$HANG_PORT"
  # A port whose backlog is full: the SYN is dropped and connect waits.
  printf '[[probes]]\nname = "hang-tcp"\nkind = "tcp"\nurl = "127.0.0.1:%s"\ninterval = "3s"\ntimeout = "2s"\n' "$FULL_PORT"
} >"$WORK/lifeboat.toml"
LB=("$LIFEBOAT" -q -c "$WORK/lifeboat.toml")
"${LB[@]}" init >/dev/null

start_serve "$WORK/lifeboat.toml" "$PORT" "$WORK/serve.log"
pids+=("$serve_pid")
# The first interval spreads the starts; measure after it.
sleep 12

echo "## lifeboat serve: 100 probes at 10 s (25 each PostgreSQL, Redis, HTTP, TCP) and 2 timing out ($(date -u +%Y-%m-%d), $(nproc) cores)"
echo
python3 - "$serve_pid" "$PORT" "$((MINUTES * 60))" <<'PY'
import json, os, sys, time, urllib.request
pid, port, seconds = (int(a) for a in sys.argv[1:4])
hz = os.sysconf("SC_CLK_TCK")
def cpu():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])
def rss():
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
over = {}
seen = set()
t0, c0 = time.time(), cpu()
peak = 0
while time.time() - t0 < seconds:
    time.sleep(1)
    peak = max(peak, rss())
    probes = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/probes"))["probes"]
    for p in probes:
        if not p["probe"].startswith("hang-"):
            continue
        last = p.get("last") or {}
        key = (p["probe"], last.get("at"))
        if key in seen or not last.get("at"):
            continue
        seen.add(key)
        limit = 1.0 if p["probe"] == "hang-http" else 2.0
        over.setdefault(p["probe"], []).append(last["latency_seconds"] - limit)
wall = time.time() - t0
used = (cpu() - c0) / hz
probes = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/probes"))["probes"]
up = sum(1 for p in probes if p["state"] == "up")
down = sorted(p["probe"] for p in probes if p["state"] != "up" and not p["probe"].startswith("hang-"))
if down:
    print("down besides the timing-out ones:", ", ".join(down), file=sys.stderr)
    for p in probes:
        if p["probe"] in down[:3]:
            print(p["probe"], (p.get("last") or {}).get("detail"), file=sys.stderr)
runs = sum(len(p["history"]) for p in probes)
print("| measure | value | target |")
print("|---|---|---|")
print(f"| CPU of serve over {wall:.0f} s | {100 * used / wall:.2f} % of one core | ≤ 2 % |")
print(f"| resident memory (peak) | {peak / 1024:.1f} MB | — |")
print(f"| probes up / configured | {up} / {len(probes)} (the 2 timing out are down) | 100 / 102 |")
print(f"| runs kept in memory | {runs} | — |")
for name, values in sorted(over.items()):
    values.sort()
    print(f"| `{name}`: past its timeout, {len(values)} runs (median / max) | {1000 * values[len(values) // 2]:.1f} ms / {1000 * values[-1]:.1f} ms | ≤ 100 ms |")
PY
kill -TERM "$serve_pid"
wait "$serve_pid" && echo && echo "serve stopped on SIGTERM with exit 0."
