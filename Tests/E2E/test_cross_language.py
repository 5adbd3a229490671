"""One conversation, three implementations: the Swift wrapper (`sessionctl run`), the Python helper
(`run_claude`) and the Node helper (`runClaude`) take turns on one key, and the context is kept."""
import json
import subprocess
import sys

from conftest import ROOT

PYTHON_TURN = """
import sys
from sessiond_client import run_claude
result = run_claude([sys.argv[1], "-p", sys.argv[2]], key=sys.argv[3])
print(result.result)
sys.exit(result.exit_code)
"""

NODE_TURN = """
import { runClaude } from %s;
const [claude, prompt, key] = process.argv.slice(1);
const result = await runClaude([claude, "-p", prompt], { key });
console.log(result.result);
process.exit(result.exitCode);
""" % json.dumps(str(ROOT / "clients/node/index.js"))


def python_turn(machine, key, prompt):
    env = dict(machine.environment(), PYTHONPATH=str(ROOT / "clients/python"))
    done = subprocess.run([sys.executable, "-c", PYTHON_TURN, machine.claude, prompt, key], cwd=machine.workdir,
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def node_turn(machine, key, prompt):
    done = subprocess.run(["node", "--input-type=module", "-e", NODE_TURN, machine.claude, prompt, key],
                          cwd=machine.workdir, env=machine.environment(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_swift_python_and_node_take_turns_on_one_conversation(machine, new_machine):
    key = "e2e:polyglot"
    out, _ = machine.turn(key, "remember amber")
    assert out.strip() == "OK, I will remember amber."
    assert python_turn(machine, key, "remember basil") == "OK, I will remember basil."
    assert node_turn(machine, key, "remember cobalt") == "OK, I will remember cobalt."
    assert python_turn(machine, key, "what should you remember?") == "You asked me to remember amber, basil, cobalt."
    # And on another machine, the Node helper restores the transcript the others wrote.
    other = new_machine()
    assert node_turn(other, key, "what should you remember?") == "You asked me to remember amber, basil, cobalt."
    out, _ = machine.turn(key, "what should you remember?")
    assert out.strip() == "You asked me to remember amber, basil, cobalt."

    session = machine.ctl("show", key)
    assert session["turnCount"] == 6
    assert [link["reason"] for link in machine.ctl("history", key)] == ["created"]
    holders = {e["detail"]["holder"].split("@")[0] for e in machine.ctl("audit", key, "--action", "lease.grant")["entries"]}
    assert len(holders) == 3, holders
