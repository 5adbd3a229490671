#!/usr/bin/env python3
"""openai-agents' SQLiteSession as a baseline for sessiond's "history" workload.

One op = add_items([one message]) + get_items(limit=20) on a file-backed SQLiteSession, the same logical
work as sessiond's messages.append + messages.list {tail: 20}, with the same message as sessiond-bench's
history workload. N concurrent asyncio tasks (1, 16, 64, 256) each pick a random session out of --sessions
(1,000, like sessiond-bench; --quick: 200) per op; every session starts with 4 messages, like
sessiond-bench's set-up, and one SQLiteSession object per session shares one database file, as an
application holding one SQLiteSession per conversation would. Every point is bounded by --ops (operations
in all) and --seconds, after an untimed warm-up (a tenth as many ops, or 4 per task) in which the library
opens its per-thread connections. Latency per op is measured with time.perf_counter_ns; p50, p99 and p99.9
are nearest-rank percentiles of every op. One JSON line per point on stdout:

    {"system": "sqlitesession", "workload": "history", "connections": 64, "ops_per_s": ..., "p50_ms": ..., ...}

"connections" is the number of concurrent tasks. The library is used as shipped: WAL journal, SQLite's
default synchronous (FULL), asyncio.to_thread with one process-wide lock per database file. With
--variants shipped,normal, a second series ("system": "sqlitesession_normal") sets synchronous=NORMAL on
each connection, like sessiond's default, to show what the fsync per commit costs.

    python3 Benchmarks/baselines/sqlitesession_bench.py                 # 1, 16, 64, 256 tasks
    python3 Benchmarks/baselines/sqlitesession_bench.py --quick
    python3 Benchmarks/baselines/sqlitesession_bench.py --tasks 64 --ops 20000 --seconds 60

It needs the PyPI package openai-agents. When `import agents` fails, it creates a virtual environment under
.cache/bench-venv at the repository root, pip-installs openai-agents there (PyPI at install time only; the
benchmark itself needs no network and no API key), and re-runs itself with that interpreter.
"""

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
VENV = os.path.join(REPO, ".cache", "bench-venv")
PACKAGE = os.environ.get("SQLITESESSION_PACKAGE", "openai-agents")

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")


def ensure_agents():
    try:
        import agents  # noqa: F401
        return
    except ImportError:
        pass
    venv_python = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV) or os.environ.get("SQLITESESSION_REEXEC"):
        raise SystemExit("sqlitesession_bench: openai-agents is not importable even in %s" % VENV)
    if not os.path.exists(venv_python):
        print("sqlitesession_bench: creating %s" % VENV, file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True, timeout=300)
    probe = subprocess.run([venv_python, "-c", "import agents"], capture_output=True, timeout=120)
    if probe.returncode != 0:
        print("sqlitesession_bench: pip install %s into %s" % (PACKAGE, VENV), file=sys.stderr)
        subprocess.run([venv_python, "-m", "pip", "install", "-q", "--disable-pip-version-check", PACKAGE],
                       check=True, timeout=900, stdout=sys.stderr)
    os.environ["SQLITESESSION_REEXEC"] = "1"
    os.execv(venv_python, [venv_python, os.path.abspath(__file__)] + sys.argv[1:])


def percentile(sorted_values, q):
    """Nearest-rank percentile of a sorted list (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, int(-(-q * len(sorted_values) // 100)))  # ceil(q/100 * n)
    return sorted_values[min(rank, len(sorted_values)) - 1]


HISTORY_MESSAGE = "One more question about the plan."  # sessiond-bench's history workload appends this


def setup_message(i):
    return {"role": "user" if i % 2 == 0 else "assistant", "content": "setup message %d" % i}


def make_session_class(variant):
    from agents import SQLiteSession

    if variant == "shipped":
        return SQLiteSession

    class NormalSyncSQLiteSession(SQLiteSession):
        """SQLiteSession with synchronous=NORMAL on every connection (sessiond's default durability)."""

        @staticmethod
        def _configure_connection(conn):
            SQLiteSession._configure_connection(conn)
            conn.execute("PRAGMA synchronous = NORMAL")

    return NormalSyncSQLiteSession


async def run_point(session_class, tasks, session_count, total_ops, seconds, db_path, message_bytes):
    sessions = [session_class("bench-read:%d" % i, db_path) for i in range(session_count)]
    text = HISTORY_MESSAGE if not message_bytes else (HISTORY_MESSAGE + " ") * (message_bytes // 34 + 1)
    text = text if not message_bytes else text[:message_bytes]
    try:
        # Set-up (not timed): 4 messages per session, like sessiond-bench's.
        for s in sessions:
            await s.add_items([setup_message(i) for i in range(4)])
        latencies = []
        check = {"bad_reads": 0}
        rng = random.Random(tasks)

        async def phase(total, until, record):
            issued = 0

            async def worker():
                nonlocal issued
                while issued < total and time.monotonic() < until:
                    issued += 1
                    session = sessions[rng.randrange(session_count)]
                    item = {"role": "user", "content": text}
                    t0 = time.perf_counter_ns()
                    await session.add_items([item])
                    items = await session.get_items(limit=20)
                    if record:
                        latencies.append(time.perf_counter_ns() - t0)
                    if not 4 < len(items) <= 20 or item not in items:
                        check["bad_reads"] += 1

            await asyncio.gather(*(worker() for _ in range(tasks)))

        # Warm-up (not timed): SQLiteSession opens one connection per session object per worker thread on
        # first use; those openings are not part of the steady state.
        await phase(max(4 * tasks, total_ops // 10), time.monotonic() + seconds / 4, False)
        started = time.perf_counter()
        await phase(total_ops, time.monotonic() + seconds, True)
        elapsed = time.perf_counter() - started
    finally:
        for s in sessions:
            s.close()
    latencies.sort()
    ms = [v / 1e6 for v in latencies]
    return {
        "ops": len(ms), "elapsed_s": round(elapsed, 3), "ops_per_s": round(len(ms) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(percentile(ms, 50), 3), "p99_ms": round(percentile(ms, 99), 3),
        "p999_ms": round(percentile(ms, 99.9), 3), "max_ms": round(ms[-1], 3) if ms else None,
        "bad_reads": check["bad_reads"], "timed_out": len(ms) < total_ops,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="1,16,64,256", help="concurrent tasks per point, comma-separated")
    ap.add_argument("--ops", type=int, default=20000, help="operations per point (each add_items + get_items)")
    ap.add_argument("--seconds", type=float, default=60.0, help="time limit per point")
    ap.add_argument("--sessions", type=int, default=None, help="sessions the ops pick from (1000; --quick: 200)")
    ap.add_argument("--quick", action="store_true", help="--ops 3000 --seconds 20 --sessions 200")
    ap.add_argument("--variants", default="shipped", help="shipped and/or normal (synchronous=NORMAL), comma-separated")
    ap.add_argument("--message-bytes", type=int, default=0,
                    help="size of the appended message (default: sessiond-bench's, 33 bytes)")
    ap.add_argument("--dir", help="where the database files go (default: a temporary directory)")
    args = ap.parse_args()
    if args.quick:
        args.ops, args.seconds = 3000, 20.0
    if args.sessions is None:
        args.sessions = 200 if args.quick else 1000
    try:  # one SQLite connection per session object per worker thread: raise the descriptor limit
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass

    ensure_agents()
    import importlib.metadata
    version = importlib.metadata.version("openai-agents")
    import sqlite3
    print("sqlitesession_bench: openai-agents %s, SQLite %s, Python %s" % (
        version, sqlite3.sqlite_version, sys.version.split()[0]), file=sys.stderr)

    random.seed(1)
    with tempfile.TemporaryDirectory(prefix="sqlitesession-bench-", dir=args.dir) as tmp:
        for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
            if variant not in ("shipped", "normal"):
                raise SystemExit("unknown variant %s" % variant)
            session_class = make_session_class(variant)
            for tasks in [int(t) for t in args.tasks.split(",")]:
                db_path = os.path.join(tmp, "%s-%d.sqlite" % (variant, tasks))
                load1 = float(open("/proc/loadavg").read().split()[0])
                result = asyncio.run(run_point(session_class, tasks, args.sessions, args.ops, args.seconds, db_path,
                                               args.message_bytes))
                line = {"system": "sqlitesession" if variant == "shipped" else "sqlitesession_normal",
                        "workload": "history", "connections": tasks}
                line.update(result)
                line.update({"sessions": args.sessions,
                             "synchronous": "FULL (SQLite default)" if variant == "shipped" else "NORMAL",
                             "openai_agents_version": version, "sqlite_version": sqlite3.sqlite_version,
                             "load1_before": load1})
                print(json.dumps(line), flush=True)
                for suffix in ("", "-wal", "-shm"):
                    try:
                        os.remove(db_path + suffix)
                    except OSError:
                        pass


if __name__ == "__main__":
    main()
