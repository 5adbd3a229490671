#!/usr/bin/env bash
# CPU per thread of sessiond and sessiond-bench during one turn point, from /proc: which thread bounds it.
# Usage: Benchmarks/cpu_per_thread.sh [CONNECTIONS] [DRIVER]   (default 64 wire; release build first)
# Prefills 100,000 sessions into a temporary database, runs a 10 s point on loopback, samples the threads'
# user and kernel time over 6 s of it, and prints per thread its cores and its µs per turn in each, and the
# machine's idle share. Stops what it starts.
# WRITER_STATES=1 also samples the writer thread's state every 0.5 ms over those 6 s (running or runnable,
# waiting for work, or blocked in the kernel, with the kernel stacks it blocks in; reading them needs root).
# The sampler takes some CPU of its own, so compare such runs with each other only.
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
      echo "$pid $(basename "$task") $(tr ' ' _ <"$task/comm") $(awk '{print $14, $15}' "$task/stat")"
    done
  done
  head -1 /proc/stat >&2
}
snapshot >"$work/a" 2>"$work/cpu-a"
if [ -n "${WRITER_STATES:-}" ]; then
  writer=$(grep -l sessiond-writer /proc/$server/task/*/comm | head -1 | cut -d/ -f5)
  python3 - "/proc/$server/task/$writer" >"$work/states" <<'PY'
import collections, sys, time
task = sys.argv[1]
states, stacks, samples = collections.Counter(), collections.Counter(), 0
end = time.monotonic() + 6
while time.monotonic() < end:
    try:
        state = open(f"{task}/stat").read().rsplit(")", 1)[1].split()[0]
        if state == "D":
            frames = [line.split()[-1].split("+")[0] for line in open(f"{task}/stack").read().splitlines()]
            calls = [frame for frame in frames if frame.startswith("__x64_sys_")]
            stacks[" < ".join(frames[:3] + ["…"] + calls[:1])] += 1
    except OSError:
        continue
    states[{"R": "on a CPU or runnable", "S": "waiting for work", "D": "blocked in the kernel"}.get(state, state)] += 1
    samples += 1
    time.sleep(0.0005)
print(f"writer states over {samples} samples:")
for state, count in states.most_common():
    print(f"  {100 * count / samples:5.1f} %  {state}")
for stack, count in stacks.most_common(3):
    print(f"  {100 * count / samples:5.1f} %    blocked in {stack}")
PY
else
  sleep 6
fi
snapshot >"$work/b" 2>"$work/cpu-b"
wait "$bench"
cat "$work/point"
python3 - "$work" "$server" <<'PY'
import sys
work, server = sys.argv[1], sys.argv[2]
import json
# Ticks in user mode and in the kernel, per (pid, tid, name).
ticks = lambda path: {tuple(l.split()[:3]): tuple(map(int, l.split()[3:5])) for l in open(path)}
a, b = ticks(f"{work}/a"), ticks(f"{work}/b")
turns = json.load(open(f"{work}/point"))["ops_per_s"] * 6
total = {}
for key, (user, kernel) in sorted(b.items()):
    user, kernel = user - a.get(key, (0, 0))[0], kernel - a.get(key, (0, 0))[1]
    cores = (user + kernel) / 100 / 6
    name = ("sessiond " if key[0] == server else "bench    ") + key[2]
    if cores >= 0.01:
        print(f"{name:32s} thread {key[1]:>7s}  {cores:.2f} cores, µs per turn: "
              f"{user * 1e4 / turns:5.0f} user {kernel * 1e4 / turns:5.0f} kernel")
    total[key[0]] = total.get(key[0], 0) + cores
for pid, cores in total.items():
    print(f"{'sessiond' if pid == server else 'bench':8s} total {cores:.2f} cores")
before = list(map(int, open(f"{work}/cpu-a").read().split()[1:]))
after = list(map(int, open(f"{work}/cpu-b").read().split()[1:]))
delta = [y - x for x, y in zip(before, after)]
print(f"machine idle {100 * delta[3] / sum(delta):.0f} %")
PY
if [ -f "$work/states" ]; then cat "$work/states"; fi
