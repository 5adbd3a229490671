#!/usr/bin/env python3
"""Instructions per operation of sessiond, counted by callgrind: repeatable where timings are not.

    python3 Benchmarks/callgrind/profile.py BINARY [BINARY_B] [--workload turn] [--operations 3000]

Starts each binary (release builds; a debug build works, but counts what debug code does) under `valgrind --tool=callgrind` on loopback, on a copy of one prefilled
database, warms it up, zeroes the counters, drives a fixed number of operations with `sessiond-bench`,
dumps the counters and stops it. Prints, per operation, the instructions of the whole process, per
library, for the parts named in PARTS (inclusive), and the functions with the most instructions of their
own. With two binaries it prints them side by side, with the ratio B / A. For read and history,
sessiond-bench first creates its 1,000 sessions, and those writes are counted too.

Instructions are not time: a syscall, a cache miss or a lock wait costs time and few instructions, so a
change that moves instructions still needs an `ab.sh` run to show what it does to throughput. But the
same binary on the same input gives nearly the same count whatever else the machine runs, which is what
makes small changes visible here.

Two workarounds for valgrind 3.19 (Debian 12): it cannot read the DWARF 5 that Swift 6.3 writes, so the
binary is profiled from a copy without debug information (function names come from the symbol table);
and it faults on the read-only signal mask libdispatch gives `sigsuspend`, so `sigsuspend_shim.c` is
compiled and preloaded.
"""
import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Parts of a request, by the functions whose inclusive count measures them (demangled, simplified; a
# `specialized` copy counts too; later names are what earlier builds called it, and each build counts the
# first it has).
PARTS = [
    ("NIO event loops (sockets, framing)", "SelectableEventLoop.run()"),
    ("writer thread (SQLite and the turn logic)", "static WriteQueue.serve(_:shared:maxBatch:checkpointer:walFrames:)",
     "static WriteQueue.run(writer:shared:maxBatch:checkpointer:)"),
    ("  SQLite statements (sqlite3_step)", "sqlite3_step"),
    ("request frames read and scanned (envelope)", "RPCRequestEnvelope.init(parsing:)"),
    ("params decoded", "RPCRequestEnvelope.decodeParams<A>(_:)", "RPCRequestEnvelope.decodeParams<A>(_:using:)"),
    ("results written (WireWriter)", "static WireWriter.success<A>(id:result:allocator:)"),
]


def demangle(names):
    out = subprocess.run(["swift", "demangle", "--simplified"], input="\n".join(names),
                         capture_output=True, text=True, check=True).stdout.split("\n")
    return dict(zip(names, out))


def parse(path):
    """Self and inclusive counts per function, and self counts per object, from one callgrind file."""
    names, objects = {}, {}
    function = obj = None
    in_call = False
    own, inclusive, per_object = collections.Counter(), collections.Counter(), collections.Counter()

    def resolve(text, table):
        match = re.match(r"\((\d+)\)(?: (.*))?", text)
        if not match:
            return text
        if match.group(2) is not None:
            table[match.group(1)] = match.group(2)
        return table.get(match.group(1), text)

    with open(path, errors="replace") as lines:
        for line in lines:
            if line.startswith("ob="):
                obj = resolve(line[3:].strip(), objects)
            elif line.startswith("fn="):
                function = resolve(line[3:].strip(), names)
            elif line.startswith("cfn="):
                resolve(line[4:].strip(), names)
            elif line.startswith("cob="):
                resolve(line[4:].strip(), objects)
            elif line.startswith("calls="):
                in_call = True
            elif line[:1].isdigit() or line[:1] in "+-*":
                fields = line.split()
                if len(fields) < 2:
                    continue
                cost = int(fields[1])
                inclusive[function] += cost
                if in_call:
                    in_call = False
                else:
                    own[function] += cost
                    library = os.path.basename(obj or "?")
                    per_object["sessiond" if library.endswith("-nodebug") else library] += cost
    return own, inclusive, per_object


def profile(binary, seed, args, work):
    """Runs one binary under callgrind and returns its parsed counts and the load generator's result."""
    label = os.path.basename(binary)
    stripped = os.path.join(work, f"{label}-nodebug")
    subprocess.run(["objcopy", "--strip-debug", binary, stripped], check=True)
    db = os.path.join(work, f"{label}.sqlite")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    shutil.copy(seed, db)
    out_file = os.path.join(work, f"{label}.callgrind")
    env = dict(os.environ, LD_PRELOAD=os.path.join(work, "sigsuspend_shim.so"))
    stdout = open(os.path.join(work, f"{label}.out"), "w+")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", stripped,
         "--listen", "127.0.0.1:0", "--log-level", "error", "--db", db,
         # Past the default cap of 100,000 sessions per tenant, the sweeper would evict the surplus during
         # the count, and the figures would measure that instead.
         "--max-sessions-per-tenant", str(max(100_000, 2 * args.sessions))],
        stdout=stdout, stderr=subprocess.DEVNULL, env=env)
    try:
        address = None
        for _ in range(600):
            stdout.seek(0)
            match = re.search(r"LISTENING tcp (\S+)", stdout.read())
            if match:
                address = match.group(1)
                break
            if server.poll() is not None:
                sys.exit(f"{label} exited under valgrind before listening")
            time.sleep(0.1)
        if not address:
            sys.exit(f"{label} did not listen within 60 s under valgrind")

        def drive(operations):
            result = subprocess.run(
                [args.bench, "run", "--addr", address, "--workload", args.workload, "--connections",
                 str(args.connections), "--duration", "600", "--max-operations", str(operations),
                 "--keys", str(args.sessions)], capture_output=True, text=True, check=True)
            return json.loads(result.stdout)

        drive(args.warmup)
        subprocess.run(["callgrind_control", "--zero", str(server.pid)], capture_output=True, check=True)
        point = drive(args.operations)
        subprocess.run(["callgrind_control", "--dump", str(server.pid)], capture_output=True, check=True)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
    dumps = sorted((p for p in os.listdir(work) if p.startswith(f"{label}.callgrind.")),
                   key=lambda p: int(p.rsplit(".", 1)[1]))
    if not dumps:
        sys.exit(f"callgrind wrote no dump for {label}")
    return parse(os.path.join(work, dumps[-1])), point


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binaries", nargs="+", help="one or two sessiond release binaries")
    parser.add_argument("--workload", default="turn", choices=["turn", "read", "history", "mixed"])
    parser.add_argument("--operations", type=int, default=3000, help="operations counted (default 3000)")
    parser.add_argument("--warmup", type=int, default=500, help="operations before the counters are zeroed")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--sessions", type=int, default=10000, help="sessions in the prefilled database")
    parser.add_argument("--top", type=int, default=25, help="functions listed by their own instructions")
    parser.add_argument("--keep", metavar="DIR", help="keep callgrind's files here (for callgrind_annotate)")
    parser.add_argument("--bench", help="the sessiond-bench to drive it (default: the one beside the first binary)")
    args = parser.parse_args()
    if len(args.binaries) > 2:
        parser.error("one or two binaries")
    for tool in ("valgrind", "callgrind_control", "objcopy", "gcc"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed (Debian: valgrind, binutils, gcc)")
    args.bench = args.bench or os.path.join(os.path.dirname(os.path.abspath(args.binaries[0])), "sessiond-bench")
    if not os.path.exists(args.bench):
        sys.exit(f"{args.bench} is missing: build it beside sessiond (swift build -c release), or pass --bench")

    work = tempfile.mkdtemp(prefix="sessiond-callgrind-")
    try:
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", os.path.join(HERE, "sigsuspend_shim.c"),
                        "-o", os.path.join(work, "sigsuspend_shim.so")], check=True)
        seed = os.path.join(work, "seed.sqlite")
        subprocess.run([args.bench, "prefill", "--db", seed, "--sessions", str(args.sessions)],
                       capture_output=True, check=True)
        runs = []
        for index, binary in enumerate(args.binaries):
            copy = os.path.join(work, "ab"[index])  # distinct labels even for two files of one name
            shutil.copy(os.path.realpath(binary), copy)
            runs.append(profile(copy, seed, args, work))
        report(args, runs)
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            for name in os.listdir(work):
                if ".callgrind" in name:
                    shutil.copy(os.path.join(work, name), args.keep)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(args, runs):
    columns = ["A", "B"][: len(runs)]
    names = sorted({name for (own, inclusive, _), _ in runs for name in inclusive})
    readable = demangle(names)

    def row(label, values):
        cells = "".join(f"{value / args.operations:>14,.0f}" for value in values)
        ratio = f"{values[1] / values[0]:>9.3f}x" if len(values) == 2 and values[0] else ""
        print(f"{label[:78]:<78}{cells}{ratio}")

    print(f"# instructions per {args.workload} operation: {args.operations} operations, "
          f"{args.connections} connections, {args.sessions} sessions")
    for column, binary, (_, point) in zip(columns, args.binaries, runs):
        print(f"# {column}: {binary} ({point['errors']} errors, "
              f"{point['conflicts']} conflicts under valgrind)")
    print(f"{'':<78}" + "".join(f"{column:>14}" for column in columns) + ("    B / A" if len(runs) == 2 else ""))
    row("whole process", [sum(own.values()) for (own, _, _), _ in runs])
    missing = []
    for label, *functions in PARTS:
        # Per build, the first of the names it has: a later name may call the earlier one.
        counts = []
        for (_, inclusive, _), _ in runs:
            for function in functions:
                wanted = {function, "specialized " + function}
                count = sum(count for name, count in inclusive.items() if readable.get(name) in wanted)
                if count:
                    break
            counts.append(count)
        row(label, counts)
        if not any(counts):
            missing.append(functions[0])
    print("\nby library (own instructions)")
    libraries = collections.Counter()
    for (_, _, per_object), _ in runs:
        libraries.update(per_object)
    for library, _ in libraries.most_common(8):
        row(f"  {library}", [per_object[library] for (_, _, per_object), _ in runs])
    if args.top:
        print(f"\nfunctions with the most instructions of their own (in {columns[0]})")
    own_a = runs[0][0][0]
    for name, _ in own_a.most_common(args.top):
        row(f"  {readable.get(name, name)}", [own[name] for (own, _, _), _ in runs])
    if missing:
        sys.exit(f"no instructions under {', '.join(missing)}: renamed? Update PARTS in {__file__}")


if __name__ == "__main__":
    main()
