#!/usr/bin/env python3
"""What `sessionctl run` adds to a Claude Code turn, measured with the real CLI against the fake API.

    python3 Benchmarks/wrapper_overhead.py [--turns 20]

Runs the same number of turns directly (`claude -p … --resume <id>`) and through `sessionctl run`
(which resumes the same way, after asking the registry), interleaved so that both see the same machine,
and prints the median wall time of each and the difference. Also prints, per wrapped turn, the
transcript bytes uploaded against the transcript's size, which shows that uploads are deltas.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "Tests" / "E2E"))
import fake_anthropic  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--build", default=str(ROOT / ".build" / "release"))
    args = parser.parse_args()
    claude = os.environ.get("SESSIOND_CLAUDE_BIN") or subprocess.run(
        [sys.executable, str(ROOT / "Tests/E2E/fetch_claude.py")], check=True, capture_output=True, text=True).stdout.strip()
    sessiond, sessionctl = Path(args.build) / "sessiond", Path(args.build) / "sessionctl"

    work = Path(tempfile.mkdtemp(prefix="wrapper-overhead-"))
    (work / "home").mkdir()
    (work / "cwd").mkdir()
    server, port = fake_anthropic.start_server(port=0)
    registry = subprocess.Popen([str(sessiond), "--listen", "127.0.0.1:0", "--db", str(work / "db.sqlite"),
                                 "--log-level", "error"], stdout=subprocess.PIPE, text=True)
    addr = registry.stdout.readline().split()[2]
    env = dict(os.environ, HOME=str(work / "home"), ANTHROPIC_BASE_URL=f"http://127.0.0.1:{port}",
               ANTHROPIC_API_KEY="test", DISABLE_TELEMETRY="1", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
               DISABLE_AUTOUPDATER="1", SESSIOND_ADDR=addr)

    def timed(argv):
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=work / "cwd", env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=300)
        elapsed = time.perf_counter() - started
        assert done.returncode == 0, done.stderr
        return elapsed, done

    try:
        # One conversation each, started once, then resumed turn after turn.
        _, first = timed([claude, "-p", "remember oak", "--output-format", "json"])
        direct_id = json.loads(first.stdout)["session_id"]
        timed([str(sessionctl), "run", "--key", "overhead", "--", claude, "-p", "remember oak"])
        direct, wrapped, uploads = [], [], []
        for turn in range(args.turns):
            elapsed, _ = timed([claude, "-p", f"turn {turn}", "--resume", direct_id, "--output-format", "json"])
            direct.append(elapsed)
            elapsed, done = timed([str(sessionctl), "run", "-v", "--key", "overhead", "--", claude, "-p", f"turn {turn}"])
            wrapped.append(elapsed)
            match = re.search(r"uploaded (\d+) new transcript bytes \(transcript is (\d+) bytes\)", done.stderr)
            if match:
                uploads.append((int(match.group(1)), int(match.group(2))))
        d, w = statistics.median(direct) * 1000, statistics.median(wrapped) * 1000
        print(f"turns: {args.turns} each, interleaved")
        print(f"direct claude -p --resume: median {d:.0f} ms")
        print(f"sessionctl run:            median {w:.0f} ms")
        print(f"added by the wrapper:      median {w - d:.0f} ms ({(w - d) / d * 100:.1f} %)")
        if uploads:
            sent = statistics.median(u for u, _ in uploads)
            size = statistics.median(s for _, s in uploads)
            print(f"transcript upload per turn: median {sent:.0f} bytes of a median {size:.0f}-byte transcript "
                  f"({sent / size * 100:.1f} %); last turn {uploads[-1][0]} of {uploads[-1][1]} bytes")
    finally:
        registry.terminate()
        registry.wait(timeout=30)
        server.stop()


if __name__ == "__main__":
    main()
