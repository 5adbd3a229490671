#!/usr/bin/env bash
# Redis baseline for sessiond's benchmark: starts Debian's redis-server on 127.0.0.1 (free port, temp dir,
# appendonly yes, appendfsync everysec, no RDB snapshots), drives it with redis-benchmark and EVALSHA
# scripts that do the same logical work as sessiond's turn and read workloads, prints one JSON line per
# point on stdout, and stops redis on exit (also on error or Ctrl-C).
#
#   Benchmarks/baselines/redis.sh                 # 1, 16, 64, 256 connections, 200,000 requests a point
#   Benchmarks/baselines/redis.sh --quick         # 20,000 requests a point
#   Benchmarks/baselines/redis.sh --connections "64" --requests 100000 --workloads "turn read"
#   Benchmarks/baselines/redis.sh --unix          # redis-benchmark over a Unix socket instead of TCP
#   Benchmarks/baselines/redis.sh --workloads turn_driver --bench .build/release/sessiond-bench
#
# Workloads (JSON "workload"):
#   turn        real turns of two EVALs each (acquire, then complete with the acquire's token and fence) on a
#               random key out of --keys: redis_turn.lua in `step` mode (see there). ops_per_s = turns
#               (EVAL pairs) per second. redis-benchmark times single EVALs, so per-turn latencies are
#               estimates: p50 = 2 x p50(EVAL), pXX = pXX(EVAL) + p50(EVAL); the measured per-EVAL
#               figures are in eval_*.
#   turn_driver the same turns driven by sessiond-bench (`sessiond-bench redis`, path in --bench) instead of
#               redis-benchmark: each connection sends a random key's `acquire`, then its `complete` with the
#               token and fence that came back, and times the pair, as sessiond's turn points are timed. So the
#               per-turn latencies are measured, not estimated, and both systems have the same load generator.
#               Bounded by --requests / 2 turns and --timeout. The line's system is "redis (sessiond-bench)".
#   turn_fused  acquire and complete in one EVAL (one round trip per turn): an upper bound for Redis.
#   read        half session.get (HGETALL of a random session), half session.list (the first page of
#               --list-limit sessions, newest first; redis_read.lua), as sessiond-bench's read workload
#               alternates them. redis-benchmark sends one command per run, so the two run one after the
#               other (half the requests each) and the line gives the 50/50 mix: ops_per_s is the harmonic
#               mean, percentiles come from the average of the two latency distributions; get_* and list_*
#               are the measured halves.
# Every point: pipelining off (-P 1), bounded by -n and by --timeout seconds.
#
# A turn reports a new CLI session id, 1,200 input and 300 output tokens, $0.01, and the two messages
# sessiond-bench sends. Before the first point, --prepopulate sessions (default: all --keys) get one
# completed turn each, so turns resume; --prepopulate 0 starts empty, so early turns create sessions.
#
# Options: --quick, --connections "1 16 64 256", --requests N, --keys N (100000), --prepopulate N,
#          --workloads "turn turn_fused read", --timeout S (per point, 300), --list-limit N (20), --unix,
#          --bench PATH (sessiond-bench, for turn_driver).
# Needs redis-server and redis-benchmark (Debian: redis-server, redis-tools; installed with apt-get when
# missing and running as root) and python3. Exit status: 0 when every point ran, 1 otherwise.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONNECTIONS="1 16 64 256"
REQUESTS=200000
KEYSPACE=100000
PREPOPULATE=""
WORKLOADS="turn turn_fused read"
POINT_TIMEOUT=300
LIST_LIMIT=20
TRANSPORT=tcp
BENCH=""
USER_MSG="Please summarise the change in the build script."
ASSISTANT_MSG="The build now caches dependencies and runs tests in parallel."

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) REQUESTS=20000 ;;
        --connections) CONNECTIONS="$2"; shift ;;
        --requests) REQUESTS="$2"; shift ;;
        --keys) KEYSPACE="$2"; shift ;;
        --prepopulate) PREPOPULATE="$2"; shift ;;
        --workloads) WORKLOADS="$2"; shift ;;
        --timeout) POINT_TIMEOUT="$2"; shift ;;
        --list-limit) LIST_LIMIT="$2"; shift ;;
        --unix) TRANSPORT=unix ;;
        --bench) BENCH="$2"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "redis.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
PREPOPULATE="${PREPOPULATE:-$KEYSPACE}"

log() { echo "redis.sh: $*" >&2; }

# --- redis-server and redis-benchmark -------------------------------------------------------------------
if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null || ! command -v redis-cli >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing redis-server and redis-tools with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        timeout 600 apt-get install -y -qq redis-server redis-tools >&2 \
            || { timeout 600 apt-get update -qq >&2 && timeout 600 apt-get install -y -qq redis-server redis-tools >&2; }
    else
        log "redis-server/redis-benchmark missing: apt-get install redis-server redis-tools"
        exit 1
    fi
fi
REDIS_VERSION="$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
BENCH_VERSION="$(redis-benchmark --version | awk '{print $2}')"
log "redis-server $REDIS_VERSION, redis-benchmark $BENCH_VERSION"

# --- start redis on a free loopback port -----------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sessiond-redis-bench.XXXXXX")"
REDIS_PID=""
cleanup() {
    local status=$?
    if [ -n "$REDIS_PID" ] && kill -0 "$REDIS_PID" 2>/dev/null; then
        kill -TERM "$REDIS_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# redis-server cannot pick its own port (--port 0 turns TCP off), so ask the kernel for a free one.
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
redis-server --bind 127.0.0.1 --port "$PORT" --protected-mode yes --daemonize no \
    --dir "$WORK" --logfile "$WORK/redis.log" \
    --unixsocket "$WORK/redis.sock" --unixsocketperm 700 \
    --appendonly yes --appendfsync everysec --save "" &
REDIS_PID=$!
# Where redis-cli and redis-benchmark connect: the TCP port, or the Unix socket with --unix.
if [ "$TRANSPORT" = unix ]; then TARGET=(-s "$WORK/redis.sock"); else TARGET=(-h 127.0.0.1 -p "$PORT"); fi
R() { timeout 60 redis-cli "${TARGET[@]}" "$@"; }
for _ in $(seq 1 150); do
    if [ "$(R PING 2>/dev/null || true)" = PONG ]; then break; fi
    kill -0 "$REDIS_PID" 2>/dev/null || { log "redis-server exited:"; cat "$WORK/redis.log" >&2; exit 1; }
    sleep 0.1
done
[ "$(R PING)" = PONG ] || { log "redis-server did not answer"; exit 1; }
log "redis-server pid $REDIS_PID on 127.0.0.1:$PORT and $WORK/redis.sock (driven over $TRANSPORT), appendonly $(R CONFIG GET appendonly | tail -1), appendfsync $(R CONFIG GET appendfsync | tail -1), dir $WORK"

TURN_SHA="$(R SCRIPT LOAD "$(cat "$HERE/redis_turn.lua")")"
READ_SHA="$(R SCRIPT LOAD "$(cat "$HERE/redis_read.lua")")"

# --- sessions with one completed turn each (the benchmark's turns then resume) ---------------------------
if [ "$PREPOPULATE" -gt 0 ]; then
    log "prepopulating $PREPOPULATE sessions"
    for ((from = 0; from < PREPOPULATE; from += 5000)); do
        to=$((from + 5000)); [ "$to" -gt "$PREPOPULATE" ] && to=$PREPOPULATE
        R EVALSHA "$TURN_SHA" 1 unused prepopulate "$from" "$to" >/dev/null
    done
fi
log "sessions: $(R ZCARD sessions:idx)"

# redis-benchmark's output (--precision 3) as JSON: ops, p50/p99 from the latency summary, the percentile
# table (HDR steps), elapsed time.
parse() { # outfile
    python3 - "$1" <<'PY'
import json, re, sys
text = open(sys.argv[1], encoding="utf-8", errors="replace").read().replace("\r", "\n")
rps = re.search(r"throughput summary:\s*([\d.]+) requests per second", text)
summary = re.search(r"latency summary \(msec\):\s*\n\s*avg\s+min\s+p50\s+p95\s+p99\s+max\s*\n\s*([\d.\s]+)\n", text)
table = [[float(p), float(v)] for p, v in re.findall(r"^\s*([\d.]+)% <= ([\d.]+) milliseconds", text, re.M)]
done = re.search(r"(\d+) requests completed in ([\d.]+) seconds", text)
if not (rps and summary and table and done):
    print(json.dumps({"error": "could not parse redis-benchmark output"}))
else:
    avg, mn, p50, p95, p99, mx = (float(x) for x in summary.group(1).split())
    print(json.dumps({"ops": float(rps.group(1)), "p50": p50, "p99": p99, "max": mx, "table": table,
                      "requests": int(done.group(1)), "seconds": float(done.group(2))}))
PY
}

# One JSON line for a point from parsed runs: emit workload connections extra-json run-json [run-json]
emit() {
    python3 - "$@" "$REDIS_VERSION" <<'PY'
import json, sys
workload, conns, extra, *runs, version = sys.argv[1:]
extra = json.loads(extra)
runs = [json.loads(r) for r in runs]
out = {"system": "redis", "workload": workload, "connections": int(conns)}
bad = [r["error"] for r in runs if "error" in r]
if bad:
    out["error"] = bad[0]
    print(json.dumps(out)); sys.exit(0)

def cdf(table, x):
    """Fraction of requests at or below x ms, from the HDR percentile table (a lower bound)."""
    below = [p for p, v in table if v <= x]
    return max(below) / 100 if below else 0.0

def quantile(tables, q):
    """Latency at quantile q (0..1) of the equal mix of the tables' distributions."""
    for x in sorted({v for t in tables for _, v in t}):
        if sum(cdf(t, x) for t in tables) / len(tables) >= q:
            return x
    return max(v for t in tables for _, v in t)

def p999(run):  # the first HDR step at or above 99.9 % (99.902 %)
    return next((v for p, v in sorted(run["table"]) if p >= 99.9), run["table"][-1][1])

if workload == "turn":
    r = runs[0]
    # Two EVALs per turn (acquire, complete): turns/s = EVALs/s x completes / EVALs (about 1/2).
    share = extra["completes"] / max(1, extra["acquires"] + extra["completes"])
    out.update({"ops_per_s": round(r["ops"] * share, 1), "p50_ms": round(2 * r["p50"], 3),
                "p99_ms": round(r["p99"] + r["p50"], 3), "p999_ms": round(p999(r) + r["p50"], 3),
                "latency": "per turn, estimated from per-EVAL: p50=2*eval_p50, pXX=eval_pXX+eval_p50",
                "evals_per_s": r["ops"], "eval_p50_ms": r["p50"], "eval_p99_ms": r["p99"],
                "eval_p999_ms": p999(r), "eval_max_ms": r["max"], "requests": r["requests"]})
elif workload == "turn_driver":
    # sessiond-bench's own line: per-turn figures, measured.
    out.update(runs[0])
    extra.pop("errors", None)  # Redis's error replies count lease conflicts too; the driver's line splits them
    out.update({"workload": "turn", "driver": "sessiond-bench", "latency": "per turn, measured (acquire sent to complete answered)"})
elif workload == "read":
    get, lst = runs
    out.update({"ops_per_s": round(1 / (0.5 / get["ops"] + 0.5 / lst["ops"]), 1),
                "p50_ms": quantile([get["table"], lst["table"]], 0.5),
                "p99_ms": quantile([get["table"], lst["table"]], 0.99),
                "p999_ms": quantile([get["table"], lst["table"]], 0.999),
                "latency": "50/50 mix of the get and list runs' distributions",
                "get_ops_per_s": get["ops"], "get_p50_ms": get["p50"], "get_p99_ms": get["p99"], "get_p999_ms": p999(get),
                "list_ops_per_s": lst["ops"], "list_p50_ms": lst["p50"], "list_p99_ms": lst["p99"], "list_p999_ms": p999(lst),
                "requests": get["requests"] + lst["requests"]})
else:
    r = runs[0]
    out.update({"ops_per_s": r["ops"], "p50_ms": r["p50"], "p99_ms": r["p99"], "p999_ms": p999(r), "max_ms": r["max"],
                "requests": r["requests"]})
out.update(extra)
out.update({"redis_version": version, "appendfsync": "everysec"})
print(json.dumps(out), flush=True)
PY
}

stat() { R HGET stats "$1" | sed 's/^$/0/'; }
errors() { R INFO stats | tr -d '\r' | sed -n 's/^total_error_replies://p'; }
usec_per_call() {
    local v; v=$(R INFO commandstats | tr -d '\r' | sed -n "s/^cmdstat_$1:.*usec_per_call=\([0-9.]*\).*/\1/p")
    echo "${v:-null}"
}

# Runs redis-benchmark once: bench outfile requests command...; fails on a timeout or a crash.
bench() {
    local out="$1" n="$2" c="$3"; shift 3
    # -e: an error reply (a rare lease_held when a random key is the one turn in flight) is shown and
    # counted instead of ending the run.
    timeout "$POINT_TIMEOUT" redis-benchmark "${TARGET[@]}" -c "$c" -n "$n" -r "$KEYSPACE" -P 1 -e \
        --precision 3 "$@" >"$out" 2>&1
}

settle() { R EVALSHA "$TURN_SHA" 1 unused settle bench 600000 0 1200 300 0.01 "$USER_MSG" "$ASSISTANT_MSG" >/dev/null; }

FAILED=0
for workload in $WORKLOADS; do
    for c in $CONNECTIONS; do
        R CONFIG RESETSTAT >/dev/null
        acq0=$(stat stepAcquires); com0=$(stat stepCompletes)
        load1=$(cut -d' ' -f1 /proc/loadavg)
        ok=1; runs=(); driver=redis-benchmark
        case "$workload" in
            turn)
                bench "$WORK/out" "$REQUESTS" "$c" EVALSHA "$TURN_SHA" 1 "bench:__rand_int__" step bench 600000 \
                    "__rand_int__" 1200 300 0.01 "$USER_MSG" "$ASSISTANT_MSG" || ok=0
                runs+=("$(parse "$WORK/out")")
                settle ;;
            turn_driver)
                driver=sessiond-bench
                [ -x "$BENCH" ] || { log "turn_driver needs --bench PATH to sessiond-bench"; exit 2; }
                if [ "$TRANSPORT" = unix ]; then addr="unix:$WORK/redis.sock"; else addr="127.0.0.1:$PORT"; fi
                timeout $((POINT_TIMEOUT + 60)) "$BENCH" redis --addr "$addr" --sha "$TURN_SHA" --connections "$c" \
                    --duration "$POINT_TIMEOUT" --max-operations $((REQUESTS / 2)) --keys "$KEYSPACE" \
                    >"$WORK/out" 2>&1 || ok=0
                runs+=("$(grep '^{' "$WORK/out" | tail -1 || true)")  # none when it failed: reported below
                [ -n "${runs[-1]}" ] || ok=0 ;;
            turn_fused)
                bench "$WORK/out" "$REQUESTS" "$c" EVALSHA "$TURN_SHA" 1 "bench:__rand_int__" fused bench 600000 \
                    "__rand_int__" 1200 300 0.01 "$USER_MSG" "$ASSISTANT_MSG" || ok=0
                runs+=("$(parse "$WORK/out")") ;;
            read)
                bench "$WORK/out" $((REQUESTS / 2)) "$c" HGETALL "s:bench:__rand_int__" || ok=0
                runs+=("$(parse "$WORK/out")")
                bench "$WORK/out2" $((REQUESTS / 2)) "$c" EVALSHA "$READ_SHA" 0 list first "$LIST_LIMIT" || ok=0
                runs+=("$(parse "$WORK/out2")") ;;
            *) log "unknown workload $workload"; exit 2 ;;
        esac
        if [ "$ok" = 1 ]; then
            # Redis's own time per call (server side: no network, no queueing), from INFO commandstats.
            extra="{\"errors\": $(errors), \"load1_before\": $load1"
            case "$workload" in
                turn) extra="$extra, \"acquires\": $(( $(stat stepAcquires) - acq0 )), \"completes\": $(( $(stat stepCompletes) - com0 )), \"server_usec_per_eval\": $(usec_per_call evalsha)" ;;
                turn_fused|turn_driver) extra="$extra, \"server_usec_per_eval\": $(usec_per_call evalsha)" ;;
                read) extra="$extra, \"server_usec_per_get\": $(usec_per_call hgetall), \"server_usec_per_list\": $(usec_per_call evalsha), \"list_limit\": $LIST_LIMIT" ;;
            esac
            emit "$workload" "$c" "$extra, \"keys\": $KEYSPACE, \"prepopulated\": $PREPOPULATE, \"transport\": \"$TRANSPORT\"}" "${runs[@]}"
        else
            log "$workload c=$c: $driver failed or timed out after ${POINT_TIMEOUT}s"
            tail -c 600 "$WORK/out" >&2 || true
            echo "{\"system\": \"redis\", \"workload\": \"$workload\", \"connections\": $c, \"error\": \"$driver failed or timed out after ${POINT_TIMEOUT}s\"}"
            FAILED=1
        fi
    done
done

log "done: $(R INFO memory | tr -d '\r' | grep '^used_memory_human'), AOF $(du -sh "$WORK/appendonlydir" 2>/dev/null | cut -f1)"
exit "$FAILED"
