#!/usr/bin/env python3
"""A stand-in for the `claude` CLI in run_claude tests (stdlib only).

Understands -p/--print, the prompt (after -p, positional, or stdin), --output-format
text|json|stream-json, --verbose, --resume ID, --fork-session. Writes its transcript as JSONL at
<config>/projects/<cwd with non-alphanumerics -> '-'>/<id>.jsonl (config: $CLAUDE_CONFIG_DIR or
$HOME/.claude), like the real CLI. Resuming an id whose transcript does not exist prints
"No conversation found with session ID: <id>" on stderr and exits 1.

The answer is "echo: <prompt> (turn N)" where N counts the user lines in the transcript, so a test
can see whether context was kept.

Environment knobs:
  FAKE_CLAUDE_LOG         append one JSON line per invocation (argv, prompt, cwd, resume, ...)
  FAKE_CLAUDE_MODE        is_error | crash | garbage | exit2 | no_transcript
  FAKE_CLAUDE_SLEEP       seconds to sleep before answering
"""

import json
import os
import re
import signal
import sys
import time
import uuid

VALUE_FLAGS = {"--output-format", "--resume", "-r", "--model", "--session-id", "--append-system-prompt",
               "--input-format", "--permission-mode", "--system-prompt", "--max-turns"}


def main() -> int:
    argv = sys.argv[1:]
    opts = {}
    positional = []
    flags = set()
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in VALUE_FLAGS:
            opts[a] = argv[i + 1] if i + 1 < len(argv) else ""
            i += 2
            continue
        if a.startswith("--") and "=" in a:
            name, value = a.split("=", 1)
            opts[name] = value
        elif a.startswith("-"):
            flags.add(a)
        else:
            positional.append(a)
        i += 1
    fmt = opts.get("--output-format", "text")
    resume = opts.get("--resume") or opts.get("-r")
    fork = "--fork-session" in flags
    prompt = positional[0] if positional else sys.stdin.read()
    mode = os.environ.get("FAKE_CLAUDE_MODE", "")

    log = os.environ.get("FAKE_CLAUDE_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"argv": argv, "prompt": prompt, "cwd": os.getcwd(), "resume": resume,
                                "fork": fork, "format": fmt, "home": os.environ.get("HOME")}) + "\n")

    config = os.environ.get("CLAUDE_CONFIG_DIR") or os.path.join(os.environ["HOME"], ".claude")
    project = os.path.join(config, "projects", re.sub(r"[^A-Za-z0-9]", "-", os.getcwd()))

    history = b""
    if resume:
        old = os.path.join(project, resume + ".jsonl")
        if not os.path.exists(old):
            print(f"No conversation found with session ID: {resume}", file=sys.stderr)
            return 1
        with open(old, "rb") as f:
            history = f.read()
        sid = str(uuid.uuid4()) if fork else resume
    else:
        sid = str(uuid.uuid4())

    if os.environ.get("FAKE_CLAUDE_SLEEP"):
        time.sleep(float(os.environ["FAKE_CLAUDE_SLEEP"]))
    if mode == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "garbage":
        print("this is not json")
        return 0
    if mode == "exit2":
        print("Error: something broke", file=sys.stderr)
        return 2

    turns = 1 + sum(1 for line in history.splitlines() if b'"type": "user"' in line)
    answer = f"echo: {prompt.strip()} (turn {turns})"
    if mode != "no_transcript":
        os.makedirs(project, exist_ok=True)
        path = os.path.join(project, sid + ".jsonl")
        with open(path, "wb") as f:
            f.write(history)
            for rec in ({"type": "user", "sessionId": sid, "message": {"role": "user", "content": prompt}},
                        {"type": "assistant", "sessionId": sid, "message": {"role": "assistant", "content": answer}}):
                f.write((json.dumps(rec) + "\n").encode())

    is_error = mode == "is_error"
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": is_error,
        "duration_ms": 5,
        "num_turns": 1,
        "result": "API Error: overloaded" if is_error else answer,
        "session_id": sid,
        "total_cost_usd": 0.0125,
        "usage": {"input_tokens": 11, "output_tokens": 7},
    }
    system = {"type": "system", "subtype": "init", "session_id": sid}
    assistant = {"type": "assistant", "session_id": sid,
                 "message": {"role": "assistant", "content": [{"type": "text", "text": result["result"]}]}}
    if fmt == "json":
        if "--verbose" in flags:
            print(json.dumps([system, assistant, result]))
        else:
            print(json.dumps(result))
    elif fmt == "stream-json":
        for event in (system, assistant, result):
            print(json.dumps(event), flush=True)
    else:
        print(result["result"])
    return 1 if is_error and os.environ.get("FAKE_CLAUDE_ERROR_EXIT") else 0


if __name__ == "__main__":
    sys.exit(main())
