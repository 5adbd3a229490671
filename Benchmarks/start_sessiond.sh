# Sourced by the benchmark scripts. `start_sessiond BINARY DB [FLAGS...]` starts sessiond on a free
# loopback port in the background and waits until it listens; it sets `server` (the PID) and `addr`
# (HOST:PORT). Its stdout goes to "$work/out", so the caller's `work` folder must exist.
start_sessiond() {
  local binary=$1 db=$2
  shift 2
  "$binary" --listen 127.0.0.1:0 --log-level error --db "$db" "$@" >"$work/out" 2>/dev/null &
  server=$!
  for _ in $(seq 100); do grep -q LISTENING "$work/out" 2>/dev/null && break; sleep 0.1; done
  addr=$(awk '/LISTENING tcp/ {print $3; exit}' "$work/out")
  [ -n "$addr" ] || { echo "sessiond did not start" >&2; return 1; }
}
