#!/usr/bin/env bash
# Benchmark (issue 19): `lifeboat serve` as a service — 20 files targets on `every 1m`
# schedules and 5 notifiers (two webhooks, Slack, Discord, a command; all to a local
# receiver), one local repository. Measures, on the release build: CPU and resident memory of
# `serve` between jobs, /metrics latency under 50 requests/s, and the drift of scheduled
# starts from their slots. Targets: idle CPU ≤ 1% of one core, RSS ≤ 60 MB, /metrics p99
# ≤ 5 ms, drift p99 ≤ 1 s.
#
#   bench/serve.sh                       # 5 minutes of schedules, then 30 s of scrapes
#   MINUTES=2 LOAD_SECONDS=10 bench/serve.sh
#
# Prints a Markdown table on stdout; serve's log in $WORK/serve.log (KEEP_WORK=1 keeps it).
source "$(dirname "$0")/lib.sh"

MINUTES=${MINUTES:-5}
LOAD_SECONDS=${LOAD_SECONDS:-30}
TARGETS=${TARGETS:-20}
WORK=${WORK:-/tmp/lifeboat-bench-serve}
PORT=${PORT:-59300}
HOOK_PORT=${HOOK_PORT:-59301}

build_lifeboat
rm -rf "$WORK"; mkdir -p "$WORK"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; remove_work' EXIT

# The receiver of every notifier: answers 200 to anything.
python3 - "$HOOK_PORT" >"$WORK/receiver.log" 2>&1 <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    do_GET = do_POST
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
pids+=($!)

export LIFEBOAT_PASSWORD=bench-password
{
  printf '[repository]\nurl = "%s"\n\n' "$WORK/repo"
  for i in $(seq 1 "$TARGETS"); do
    mkdir -p "$WORK/data/t$i"
    for j in $(seq 1 20); do head -c 4096 /dev/urandom >"$WORK/data/t$i/f$j"; done
    printf '[targets.t%s]\nkind = "files"\npaths = ["%s"]\nschedule = "every 1m"\nobjectives = { rpo = "1h" }\n\n' "$i" "$WORK/data/t$i"
  done
  for n in hook-a hook-b; do
    printf '[[notify]]\nname = "%s"\nkind = "webhook"\nurl = "http://127.0.0.1:%s/%s"\n\n' "$n" "$HOOK_PORT" "$n"
  done
  printf '[[notify]]\nname = "chat"\nkind = "slack"\nurl = "http://127.0.0.1:%s/slack"\n\n' "$HOOK_PORT"
  printf '[[notify]]\nname = "discord"\nkind = "discord"\nurl = "http://127.0.0.1:%s/discord"\n\n' "$HOOK_PORT"
  printf '[[notify]]\nname = "log"\nkind = "command"\ncommand = "cat >> %s"\n' "$WORK/alerts.jsonl"
} >"$WORK/lifeboat.toml"
LB=("$LIFEBOAT" -q -c "$WORK/lifeboat.toml")
"${LB[@]}" init >/dev/null

start_serve "$WORK/lifeboat.toml" "$PORT" "$WORK/serve.log"
pids+=("$serve_pid")

echo "## lifeboat serve: $TARGETS files targets on \`every 1m\`, 5 notifiers ($(date -u +%Y-%m-%d), $(nproc) cores)"
echo
python3 "$ROOT/bench/serve_measure.py" "$serve_pid" "$PORT" "$((MINUTES * 60))" "$LOAD_SECONDS" -- "${LB[@]}"
kill -TERM "$serve_pid"
wait "$serve_pid" && echo && echo "serve stopped on SIGTERM with exit 0."
