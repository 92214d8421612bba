"""Measures a running `lifeboat serve` for bench/serve.sh (issue 19's performance targets).

  python3 serve_measure.py PID PORT SECONDS LOAD_SECONDS -- LIFEBOAT_COMMAND...

Phase 1 samples the process's CPU time and resident memory every 0.5 s for SECONDS; the job
history (`LIFEBOAT_COMMAND jobs --json`) then tells which samples fell between jobs (idle).
Drift is each scheduled job's start minus its slot (the whole minute before it: the targets
run `every 1m`, whose slots are whole minutes). Phase 2 requests /metrics at 50 per second
for LOAD_SECONDS on one kept-alive connection, as Prometheus does, jobs running meanwhile.
Prints a Markdown table.
"""

import http.client
import json
import os
import subprocess
import sys
import time
from datetime import datetime


def parse_time(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def sample(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return time.time(), ticks, rss


def pct(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    pid, port, seconds, load_seconds = (int(a) for a in sys.argv[1:5])
    command = sys.argv[sys.argv.index("--") + 1 :]
    hz = os.sysconf("SC_CLK_TCK")

    samples = []
    end = time.time() + seconds
    while time.time() < end:
        samples.append(sample(pid))
        time.sleep(0.5)

    jobs = json.loads(subprocess.run(command + ["jobs", "--json"], check=True, capture_output=True).stdout)["jobs"]
    busy = [
        (parse_time(j["started-at"]) - 1.0, parse_time(j["finished-at"]) + 1.0)
        for j in jobs
        if j.get("started-at") and j.get("finished-at")
    ]
    # A job's task starts a little before its record (the lock is taken first): widen by
    # the second before each whole minute as well.
    idle_cpu = idle_time = 0.0
    idle_rss = []
    for (t0, c0, _), (t1, c1, r1) in zip(samples, samples[1:]):
        if any(a <= t1 and t0 <= b for a, b in busy) or (t1 % 60) < 1.5 or (t0 % 60) > 58.5:
            continue
        idle_cpu += (c1 - c0) / hz
        idle_time += t1 - t0
        idle_rss.append(r1)
    scheduled = [j for j in jobs if j.get("trigger") == "schedule" and j.get("started-at")]
    drift = [parse_time(j["started-at"]) % 60 for j in scheduled]
    outcomes = {}
    for j in jobs:
        outcomes[j["outcome"]] = outcomes.get(j["outcome"], 0) + 1

    latencies = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    end = time.time() + load_seconds
    next_at = time.time()
    while time.time() < end:
        t0 = time.perf_counter()
        try:
            conn.request("GET", "/metrics")
            reply = conn.getresponse()
            reply.read()
            assert reply.status == 200, reply.status
        except (http.client.HTTPException, OSError):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            continue
        latencies.append((time.perf_counter() - t0) * 1000)
        next_at += 1 / 50
        time.sleep(max(0.0, next_at - time.time()))
    all_rss = [r for _, _, r in samples]

    print("| measure | value | target |")
    print("| --- | --- | --- |")
    print(f"| jobs recorded | {len(jobs)} ({', '.join(f'{v} {k}' for k, v in sorted(outcomes.items()))}) | |")
    print(
        f"| idle CPU between jobs | {100 * idle_cpu / max(idle_time, 1e-9):.2f}% of one core over {idle_time:.0f} s | ≤ 1% |"
    )
    print(f"| resident memory between jobs (max) | {max(idle_rss, default=0) / 1024:.1f} MB | ≤ 60 MB |")
    print(f"| resident memory overall (max, jobs running) | {max(all_rss) / 1024:.1f} MB | |")
    print(
        f"| /metrics latency at 50 req/s ({len(latencies)} requests) | p50 {pct(latencies, 50):.2f} ms, p99 {pct(latencies, 99):.2f} ms, max {max(latencies, default=0):.2f} ms | p99 ≤ 5 ms |"
    )
    print(
        f"| drift, scheduled start − slot ({len(drift)} jobs) | p50 {pct(drift, 50):.3f} s, p99 {pct(drift, 99):.3f} s, max {max(drift, default=0):.3f} s | p99 ≤ 1 s |"
    )


if __name__ == "__main__":
    main()
