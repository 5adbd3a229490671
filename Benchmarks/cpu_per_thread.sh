#!/usr/bin/env bash
# CPU per thread of sessiond and sessiond-bench during one turn point, from /proc: which thread bounds it.
# Usage: Benchmarks/cpu_per_thread.sh [CONNECTIONS] [DRIVER]   (default 64 wire; release build first)
# Prefills 100,000 sessions into a temporary database, runs a 10 s point on loopback, samples the threads'
# utime+stime over 6 s of it, and prints cores per thread and the machine's idle share. Stops what it starts.
set -euo pipefail
connections=${1:-64}
driver=${2:-wire}
bin="$(cd "$(dirname "$0")/.." && pwd)/.build/release"
work=$(mktemp -d)
. "$(dirname "$0")/start_sessiond.sh"
trap 'kill "${server:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin/sessiond-bench" prefill --db "$work/db.sqlite" --sessions 100000 >/dev/null
start_sessiond "$bin/sessiond" "$work/db.sqlite"
"$bin/sessiond-bench" run --addr "$addr" --workload turn --connections "$connections" --duration 10 \
  --keys 100000 --driver "$driver" >"$work/point" &
bench=$!
sleep 2
snapshot() {
  for pid in $server $bench; do
    for task in /proc/$pid/task/*; do
      echo "$pid $(basename "$task") $(tr ' ' _ <"$task/comm") $(awk '{print $14 + $15}' "$task/stat")"
    done
  done
  head -1 /proc/stat >&2
}
snapshot >"$work/a" 2>"$work/cpu-a"
sleep 6
snapshot >"$work/b" 2>"$work/cpu-b"
wait "$bench"
cat "$work/point"
python3 - "$work" "$server" <<'PY'
import sys
work, server = sys.argv[1], sys.argv[2]
ticks = lambda path: {tuple(l.split()[:3]): int(l.split()[3]) for l in open(path)}
a, b = ticks(f"{work}/a"), ticks(f"{work}/b")
total = {}
for key, value in sorted(b.items()):
    cores = (value - a.get(key, 0)) / 100 / 6
    name = ("sessiond " if key[0] == server else "bench    ") + key[2]
    if cores >= 0.01:
        print(f"{name:32s} thread {key[1]:>7s}  {cores:.2f} cores")
    total[key[0]] = total.get(key[0], 0) + cores
for pid, cores in total.items():
    print(f"{'sessiond' if pid == server else 'bench':8s} total {cores:.2f} cores")
before = list(map(int, open(f"{work}/cpu-a").read().split()[1:]))
after = list(map(int, open(f"{work}/cpu-b").read().split()[1:]))
delta = [y - x for x, y in zip(before, after)]
print(f"machine idle {100 * delta[3] / sum(delta):.0f} %")
PY
