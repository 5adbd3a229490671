#!/usr/bin/env bash
# A/B of two sessiond binaries on one workload, alternating on fresh copies of one database, so that both
# see the same data and the same drift of a shared machine. Prints, per point: operations/s, p99, and the
# CPU per operation of the writer thread and of the whole server (from /proc, over 6 s of a 10 s point), and
# the server's peak RSS.
#
# Usage: Benchmarks/ab.sh BINARY_A BINARY_B [ROUNDS]        (release builds; default 3 rounds)
# Environment: WORKLOAD (turn, read, history or mixed; turn by default); CONNECTIONS (64); SESSIONS (100000) and MESSAGES
# (0 per session) for the prefilled database, or SEED=FILE to copy an existing one; EXTRA for more sessiond
# flags (say --max-sessions-per-tenant 2000000 on 1M); SEED_B=FILE runs B on a copy of that database
# instead (to compare two layouts of the same data with one binary). Loopback only; stops what it starts.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,11p' "$0"; exit 2; }
a=$(realpath "$1"); b=$(realpath "$2"); rounds=${3:-3}
sessions=${SESSIONS:-100000}
bench="$(cd "$(dirname "$0")/.." && pwd)/.build/release/sessiond-bench"
work=$(mktemp -d)
. "$(dirname "$0")/start_sessiond.sh"
trap 'kill "${server:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
if [ -n "${SEED:-}" ]; then
  seed=$(realpath "$SEED")
else
  seed="$work/seed.sqlite"
  "$bench" prefill --db "$seed" --sessions "$sessions" --messages-per-session "${MESSAGES:-0}" >/dev/null
fi
ticks() { awk '{print $14 + $15}' "$1"; }
for round in $(seq "$rounds"); do
  for side in a b; do
    binary=${!side}
    rm -f "$work"/db.sqlite*
    if [ "$side" = b ] && [ -n "${SEED_B:-}" ]; then cp "$SEED_B" "$work/db.sqlite"; else cp "$seed" "$work/db.sqlite"; fi
    sync  # the copy's dirty pages are written back now, not during the point
    # shellcheck disable=SC2086
    start_sessiond "$binary" "$work/db.sqlite" ${EXTRA:-}
    "$bench" run --addr "$addr" --workload "${WORKLOAD:-turn}" --connections "${CONNECTIONS:-64}" --duration 10 --keys "$sessions" >"$work/point" &
    load=$!
    sleep 2
    writer=$(grep -l sessiond-writer /proc/$server/task/*/comm | head -1 | cut -d/ -f5)
    w0=$(ticks /proc/$server/task/$writer/stat); s0=$(ticks /proc/$server/stat)
    sleep 6
    w1=$(ticks /proc/$server/task/$writer/stat); s1=$(ticks /proc/$server/stat)
    wait "$load"
    rss=$(awk '/VmHWM/ {print $2}' /proc/$server/status)
    kill "$server"; wait "$server" 2>/dev/null || true
    python3 - "$round" "$binary" "$work/point" "$w0" "$w1" "$s0" "$s1" "$rss" <<'PY'
import json, sys
round_, binary, point = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
w0, w1, s0, s1, rss_kb = map(int, sys.argv[4:])
ops = point["ops_per_s"]
per_op = lambda ticks: ticks / 100 / 6 / ops * 1e6  # clock ticks are 1/100 s
print(f"round {round_} {binary}: {ops:6.0f} {point['workload']}/s  p99 {point['p99_ms']:6.1f} ms  "
      f"writer {per_op(w1 - w0):4.0f} µs/op  server {per_op(s1 - s0):4.0f} µs/op  peak RSS {rss_kb / 1024:5.1f} MB")
PY
  done
done
