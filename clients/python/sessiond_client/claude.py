"""Run the Claude Code CLI as one registry turn: the Python twin of ``sessionctl run``.

:func:`run_claude` acquires the session's lease, restores the CLI transcript when the registry
holds more of it than this machine, runs the CLI with ``--resume`` when the registry says so,
uploads the new transcript bytes, and records the outcome. A failed resume ("No conversation
found") is recorded as ``resume_failed`` and the turn starts over fresh, by default with a short
recap of the stored history in front of the prompt.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import types as t
from ._wire import Address
from .client import DEFAULT_CLIENT_NAME, Client
from .errors import Conflict, NotFound, SessiondError, TooLarge
from .turn import Turn

__all__ = [
    "run_claude",
    "ClaudeResult",
    "ClaudeResumeFailed",
    "transcript_path",
    "claude_config_dir",
    "project_dir_name",
    "find_prompt",
    "build_recap",
    "parse_cli_output",
    "NO_CONVERSATION",
    "RECAP_LIMIT",
]

NO_CONVERSATION = "No conversation found with session ID:"
RECAP_HEAD = "[Recap of the earlier conversation, which could not be resumed]\n"
RECAP_TAIL = "[End of recap]\n\n"
RECAP_LIMIT = 8000
RECAP_MESSAGES = 20
CHUNK_BYTES = 2 * 1024 * 1024
_REASON_MAX = 200

# Flags that the wrapper itself sets; the caller must not pass them.
FORBIDDEN_FLAGS = ("--resume", "-r", "--continue", "-c", "--session-id")

# Claude Code 2.1.x options (commander) that take a value, so the next argument is not the prompt.
VALUE_FLAGS = frozenset(
    """--agent --agents --append-system-prompt --append-system-prompt-file --autocompact --debug-file
    --effort --environment --fallback-model --input-format --json-schema --max-budget-usd --max-turns
    --model -n --name --output-format --permission-mode --permission-prompt-tool --permission-prompts
    --plugin-dir --plugin-url --remote-control-session-name-prefix --session-id --setting-sources
    --settings --system-prompt --system-prompt-file --system-prompt-snapshot""".split()
)
# Options that take one or more values (``<values...>``): they consume arguments up to the next option.
VARIADIC_FLAGS = frozenset(
    """--add-dir --allowedTools --allowed-tools --betas --disallowedTools --disallowed-tools --file
    --mcp-config --tools""".split()
)
# Options with an optional value (``[value]``): they consume the next argument unless it is an option.
OPTIONAL_VALUE_FLAGS = frozenset(
    """-d --debug --cloud --from-pr --prompt-suggestions --remote-control -r --resume --teleport -w
    --worktree""".split()
)


class ClaudeResumeFailed(RuntimeError):
    """``on_resume_failure="fail"`` and the CLI could not resume: ``.result`` holds the CLI's result
    (``.result.exit_code`` is the CLI's exit code)."""

    def __init__(self, result: "ClaudeResult") -> None:
        super().__init__(f"the CLI could not resume session {result.resume_id}: exit {result.exit_code}")
        self.result = result


@dataclass
class ClaudeResult:
    """What :func:`run_claude` returns."""

    #: The CLI's exit code (negative: killed by that signal).
    exit_code: int
    #: The ``result`` text of the CLI's result object (``None`` when there was none).
    result: Optional[str]
    #: The CLI session id of a successful turn (never taken from an error result).
    session_id: Optional[str]
    #: The parsed result object (``{"type": "result", ...}``), if the CLI printed one.
    json: Optional[Dict[str, Any]]
    #: The CLI's stdout and stderr (of the last run when the turn started over).
    stdout: str
    stderr: str
    #: The session key the turn ran under (the fork's key with ``fork=True``).
    key: str = ""
    #: Whether the turn counts as a success (exit 0, a result, ``is_error`` false, a session id).
    ok: bool = False
    #: ``is_error`` from the result object.
    is_error: bool = False
    #: The registry's decision at acquire time.
    decision: Dict[str, Any] = field(default_factory=dict)
    #: The id passed to ``--resume`` on the first run, if any.
    resume_id: Optional[str] = None
    #: The resume failed ("No conversation found") and the turn started over (or failed).
    resume_failed: bool = False
    #: The recap put in front of the prompt after a failed resume ("" when none).
    recap: str = ""
    #: The registry session after the turn (from ``session.complete``), when recorded.
    session: Optional[t.Session] = None
    #: Whether the outcome was recorded in the registry.
    recorded: bool = False
    #: What went wrong with the registry (the CLI's result is still returned).
    warnings: List[str] = field(default_factory=list)
    #: The arguments of the last CLI run.
    args: List[str] = field(default_factory=list)
    #: ``total_cost_usd`` and usage tokens from the result object.
    cost_usd: Optional[float] = None
    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None


# -- paths ------------------------------------------------------------------------------------


def claude_config_dir(env: Optional[Mapping[str, str]] = None) -> str:
    """``$CLAUDE_CONFIG_DIR`` if set, else ``$HOME/.claude``."""
    env = os.environ if env is None else env
    config = env.get("CLAUDE_CONFIG_DIR")
    if config:
        return config
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".claude")


PROJECT_NAME_MAX = 200


def project_dir_name(cwd: str) -> str:
    """The CLI's folder name for a working directory: every non-alphanumeric character -> ``-``.

    As Claude Code 2.1.x does it (JavaScript ``replace(/[^a-zA-Z0-9]/g, "-")``, per UTF-16 code
    unit); a name over 200 characters is cut to 200 and gets ``-<hash>`` appended, where the hash
    is the Java-style string hash of the cwd in base 36."""
    name = re.sub(r"[^A-Za-z0-9]", lambda m: "--" if ord(m.group()) > 0xFFFF else "-", cwd)
    if len(name) <= PROJECT_NAME_MAX:
        return name
    return f"{name[:PROJECT_NAME_MAX]}-{_js_hash36(cwd)}"


def _js_hash36(text: str) -> str:
    """``Math.abs(h).toString(36)`` of ``h = (h << 5) - h + charCodeAt(i) | 0`` over UTF-16 units."""
    h = 0
    units = text.encode("utf-16-le")
    for i in range(0, len(units), 2):
        h = ((h << 5) - h + (units[i] | units[i + 1] << 8)) & 0xFFFFFFFF
    value = abs(h - (1 << 32) if h & 0x80000000 else h)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        value, rem = divmod(value, 36)
        out = digits[rem] + out
        if not value:
            return out


def transcript_path(cwd: str, cli_session_id: str, env: Optional[Mapping[str, str]] = None) -> str:
    """``<config>/projects/<cwd, non-alphanumerics -> '-'>/<id>.jsonl``."""
    return os.path.join(claude_config_dir(env), "projects", project_dir_name(cwd), f"{cli_session_id}.jsonl")


# -- arguments --------------------------------------------------------------------------------


def _check_args(args: Sequence[str]) -> None:
    if not args:
        raise ValueError("args must start with the CLI executable, e.g. ['claude', '-p', 'hi']")
    for arg in args[1:]:
        if arg == "--":  # what follows is positional
            break
        if arg in FORBIDDEN_FLAGS or arg.startswith(("--resume=", "--session-id=", "--continue=")):
            raise ValueError(
                f"{arg!r} is managed by the session registry: remove --resume/-r/--continue/-c/--session-id"
            )


def _output_format(args: Sequence[str]) -> Tuple[str, List[int]]:
    """The ``--output-format`` value (default ``text``) and the indexes of its tokens."""
    fmt, where = "text", []
    i = 1
    while i < len(args):
        arg = args[i]
        if arg == "--":
            break
        if arg == "--output-format" and i + 1 < len(args):
            fmt, where = args[i + 1], [i, i + 1]
            i += 2
            continue
        if arg.startswith("--output-format="):
            fmt, where = arg.split("=", 1)[1], [i]
        i += 1
    return fmt, where


def find_prompt(args: Sequence[str]) -> Optional[int]:
    """Index of the prompt in ``args`` (``args[0]`` is the executable), or ``None`` (stdin).

    The argument right after ``-p``/``--print`` if it does not start with ``-``; else the first
    positional argument not consumed by a value-taking option."""
    for i in range(1, len(args) - 1):
        if args[i] == "--":
            break
        if args[i] in ("-p", "--print") and not args[i + 1].startswith("-"):
            return i + 1
    i = 1
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return i + 1 if i + 1 < len(args) else None
        if arg.startswith("-") and len(arg) > 1:
            i += 1
            if "=" in arg and arg.startswith("--"):
                continue
            if arg in VALUE_FLAGS:
                i += 1
            elif arg in VARIADIC_FLAGS:
                while i < len(args) and not args[i].startswith("-"):
                    i += 1
            elif arg in OPTIONAL_VALUE_FLAGS:
                if i < len(args) and not args[i].startswith("-"):
                    i += 1
            continue
        return i
    return None


def _cli_args(args: Sequence[str], prompt_at: Optional[int], prompt: Optional[str],
              text_mode: bool, fmt_at: List[int], resume_id: Optional[str], fork: bool) -> List[str]:
    out = list(args)
    if prompt_at is not None and prompt is not None:
        out[prompt_at] = prompt
    for i in sorted(fmt_at, reverse=True) if text_mode else []:
        del out[i]
    extra: List[str] = []
    if text_mode:
        extra += ["--output-format", "json"]
    if resume_id:
        extra += ["--resume", resume_id]
        if fork:
            extra.append("--fork-session")
    return [out[0], *extra, *out[1:]]


# -- output -----------------------------------------------------------------------------------


def parse_cli_output(stdout: str, fmt: str) -> Optional[Dict[str, Any]]:
    """The CLI's result object: one JSON object, the last ``type == "result"`` element of the
    ``--verbose`` array, or the last ``{"type": "result"}`` line of stream-json."""

    def pick(value: Any) -> Optional[Dict[str, Any]]:
        if isinstance(value, dict):
            return value
        if isinstance(value, list):
            for item in reversed(value):
                if isinstance(item, dict) and item.get("type") == "result":
                    return item
        return None

    if fmt != "stream-json":
        text = stdout.strip()
        if text:
            try:
                found = pick(json.loads(text))
                if found is not None:
                    return found
            except ValueError:
                pass
    result = None
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith(("{", "[")):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and value.get("type") == "result":
            result = value
        elif fmt != "stream-json":
            result = pick(value) or result
    return result


def build_recap(messages: Sequence[Mapping[str, Any]], limit: int = RECAP_LIMIT) -> str:
    """The recap put in front of the prompt after a failed resume, at most ``limit`` characters.

    Keeps the newest messages that fit (oldest first in the text); ``""`` when there are none."""
    budget = limit - len(RECAP_HEAD) - len(RECAP_TAIL)
    lines: List[str] = []
    for m in reversed(list(messages)):
        role, content = m.get("role", "user"), str(m.get("content", ""))
        line = f"{role}: {content}\n"
        if len(line) > budget:
            stub = f"{role}: …\n"
            if not lines and budget > len(stub):
                # The newest message alone is too long: keep its end, closest to the new prompt.
                lines.append(f"{role}: …{content[len(content) - (budget - len(stub)):]}\n")
            break
        lines.append(line)
        budget -= len(line)
    if not lines:
        return ""
    return RECAP_HEAD + "".join(reversed(lines)) + RECAP_TAIL


def _short(text: str, limit: int = _REASON_MAX) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- running the CLI --------------------------------------------------------------------------


class _SpawnFailed(Exception):
    """The CLI could not be started (wraps the OSError)."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass
class _Run:
    args: List[str]
    exit_code: int
    stdout: str
    stderr: str


def _spawn(args: List[str], cwd: str, env: Optional[Mapping[str, str]], stdin_text: Optional[str],
           on_line: Optional[Callable[[str], None]]) -> _Run:
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    err_parts: List[str] = []

    def read_err() -> None:
        assert proc.stderr is not None
        err_parts.append(proc.stderr.read())

    def write_in() -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(stdin_text or "")
            proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass

    threads = [threading.Thread(target=read_err, daemon=True)]
    if stdin_text is not None:
        threads.append(threading.Thread(target=write_in, daemon=True))
    for th in threads:
        th.start()
    out_parts: List[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out_parts.append(line)
            if on_line is not None:
                on_line(line)
        code = proc.wait()
    finally:
        if proc.poll() is None:  # interrupted: do not leave the CLI running
            proc.kill()
            proc.wait()
        for th in threads:
            th.join(timeout=10)
    return _Run(args, code, "".join(out_parts), "".join(err_parts))


# -- the turn ---------------------------------------------------------------------------------


def run_claude(
    args: Sequence[str],
    key: Optional[str] = None,
    *,
    client: Optional[Client] = None,
    addr: Union[str, Address, None] = None,
    token: Optional[str] = None,
    client_name: Optional[str] = None,
    cwd: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
    input: Optional[str] = None,
    wait: float = 600.0,
    fork: bool = False,
    fork_key: Optional[str] = None,
    on_resume_failure: str = "recap",
    history: bool = True,
    on_line: Optional[Callable[[str], None]] = None,
    lease_seconds: Optional[int] = None,
    ttl_seconds: Optional[int] = None,
    labels: Optional[Sequence[str]] = None,
    metadata: Optional[Mapping[str, Any]] = None,
    warn: Optional[Callable[[str], None]] = None,
) -> ClaudeResult:
    """Run one Claude Code turn under the registry (the semantics of ``sessionctl run``).

    Args:
        args: the command line, starting with the executable: ``["claude", "-p", "hi"]``. Must not
            contain ``--resume``, ``-r``, ``--continue``, ``-c`` or ``--session-id`` (ValueError).
            Without ``--output-format`` (or with ``text``) the CLI runs with ``--output-format json``
            and ``.result`` is the answer text.
        key: the session key; default ``$SESSIOND_KEY``, else ``cwd:<absolute cwd>``.
        client: a connected :class:`Client` to use; otherwise one is opened (``addr``, ``token``,
            ``client_name``) and closed again.
        cwd: the working directory of the CLI (default: the current one).
        env: the CLI's environment (default: this process's); ``HOME``/``CLAUDE_CONFIG_DIR`` in it
            locate the transcripts.
        input: text for the CLI's stdin (the prompt, when ``args`` holds none).
        wait: seconds to wait for a lease another client holds (default 600).
        fork: run on a fork of ``key``'s session, under ``fork_key`` or ``<key>:fork:<8 hex>``.
        on_resume_failure: ``"recap"`` (default: start fresh with a recap of the last 20 stored
            messages before the prompt), ``"fresh"`` (start fresh, no recap) or ``"fail"`` (record
            the failure and raise :class:`ClaudeResumeFailed`).
        history: store the prompt and the answer as messages (default ``True``).
        on_line: called with every stdout line as it arrives (for ``stream-json`` passthrough).
        warn: called with registry problems that did not stop the turn (default: print to stderr).

    Returns a :class:`ClaudeResult`. The lease is always released.
    """
    if on_resume_failure not in ("recap", "fresh", "fail"):
        raise ValueError("on_resume_failure must be 'recap', 'fresh' or 'fail'")
    args = [str(a) for a in args]
    _check_args(args)
    run_cwd = os.path.realpath(cwd if cwd is not None else os.getcwd())
    if key is None:
        key = os.environ.get("SESSIOND_KEY") or f"cwd:{run_cwd}"
    fmt, fmt_at = _output_format(args)
    text_mode = fmt == "text"
    prompt_at = find_prompt(args)
    prompt: Optional[str] = args[prompt_at] if prompt_at is not None else input
    warnings: List[str] = []

    def note(message: str) -> None:
        warnings.append(message)
        if warn is not None:
            warn(message)
        else:
            print(f"sessiond: {message}", file=sys.stderr, flush=True)

    own = client is None
    if client is None:
        client = Client(addr, token, client_name=client_name or DEFAULT_CLIENT_NAME)
    try:
        if fork:
            parent = client.get(key=key)["session"]
            key = fork_key or f"{key}:fork:{secrets.token_hex(4)}"
            client.fork(parent["id"], key)
        holder = f"{client.client_name}@{socket.gethostname()} pid {os.getpid()}"
        turn = client.turn(
            key,
            tool="claude",
            cwd=run_cwd,
            holder=holder,
            wait_ms=int(max(0.0, wait) * 1000),
            lease_seconds=lease_seconds,
            ttl_seconds=ttl_seconds,
            labels=labels,
            metadata=metadata,
        )
        turn.__enter__()
        try:
            result = _turn_body(
                turn, args, key, run_cwd, env, input, fmt, fmt_at, text_mode, prompt_at, prompt,
                on_resume_failure, history, on_line, note,
            )
        except _SpawnFailed as exc:
            cause = exc.cause
            code = errno.errorcode.get(cause.errno, "") if cause.errno else ""
            try:
                turn.finish(cause, reason=_short(f"spawn_failed: {code or cause}"))
            except BaseException:  # noqa: BLE001 - the original error matters more
                pass
            raise cause from None
        except BaseException as exc:
            try:
                turn.finish(exc)
            except BaseException:  # noqa: BLE001 - the original error matters more
                pass
            raise
        try:
            done = turn.finish(None)
            if done is not None:
                result.session = done.get("session")
            result.recorded = turn.outcome is not None
        except SessiondError as exc:
            note(f"could not record the turn ({_describe_outcome(turn)}): {exc}")
            try:
                client.release(turn.session_id, turn.lease)
            except SessiondError:
                pass
        result.warnings = warnings
        if result.resume_failed and on_resume_failure == "fail":
            raise ClaudeResumeFailed(result)
        return result
    finally:
        if own:
            client.close()


def _describe_outcome(turn: Turn) -> str:
    out = turn._outcome or {}
    parts = [f"outcome {out.get('outcome', 'none')}"]
    if out.get("cli_session_id"):
        parts.append(f"cli session id {out['cli_session_id']}")
    if out.get("cost_usd") is not None:
        parts.append(f"cost ${out['cost_usd']}")
    if out.get("reason"):
        parts.append(f"reason {out['reason']}")
    return ", ".join(parts)


def _turn_body(
    turn: Turn,
    args: List[str],
    key: str,
    run_cwd: str,
    env: Optional[Mapping[str, str]],
    stdin_text: Optional[str],
    fmt: str,
    fmt_at: List[int],
    text_mode: bool,
    prompt_at: Optional[int],
    prompt: Optional[str],
    on_resume_failure: str,
    history: bool,
    on_line: Optional[Callable[[str], None]],
    note: Callable[[str], None],
) -> ClaudeResult:
    client = turn.client
    decision = dict(turn.decision)
    resume_id = turn.resume_id
    fork = turn.fork
    if resume_id:
        _restore_transcript(turn, resume_id, run_cwd, env, note)
    line_cb = on_line if fmt == "stream-json" or on_line is not None else None

    def run(cli_prompt: Optional[str], resume: Optional[str]) -> _Run:
        cli_args = _cli_args(args, prompt_at, cli_prompt, text_mode, fmt_at, resume, fork)
        cli_stdin = stdin_text
        if prompt_at is None and cli_prompt is not None and stdin_text is not None:
            cli_stdin = cli_prompt
        try:
            return _spawn(cli_args, run_cwd, env, cli_stdin, line_cb)
        except OSError as exc:
            raise _SpawnFailed(exc) from exc

    first = run(prompt, resume_id)
    result = ClaudeResult(
        exit_code=first.exit_code, result=None, session_id=None, json=None, stdout=first.stdout,
        stderr=first.stderr, key=key, decision=decision, resume_id=resume_id, args=first.args,
    )
    last = first
    if resume_id and (NO_CONVERSATION in first.stderr or NO_CONVERSATION in first.stdout):
        result.resume_failed = True
        if on_resume_failure == "fail":
            turn.resume_failed("no_conversation_found")
            _fill(result, first, fmt)
            return result
        try:
            turn.restart_fresh("no_conversation_found")
        except SessiondError as exc:
            note(f"could not record the failed resume of {resume_id}: {exc}")
            turn.clear_outcome()
        recap = ""
        if on_resume_failure == "recap":
            try:
                listed = client.messages_list(turn.session_id, tail=RECAP_MESSAGES)
                recap = build_recap(listed.get("messages", []))
            except SessiondError as exc:
                note(f"could not fetch the history for a recap: {exc}")
        result.recap = recap
        fork = False
        last = run((recap + prompt) if (recap and prompt is not None) else prompt, None)
    _fill(result, last, fmt)

    obj = result.json
    if result.ok:
        cli_id = result.session_id
        assert cli_id is not None
        _upload_transcript(turn, cli_id, run_cwd, env, note)
        messages = None
        if history:
            messages = []
            if prompt:
                messages.append({"role": "user", "content": prompt})
            messages.append({"role": "assistant", "content": result.result or ""})
        turn.ok(
            cli_id,
            cost_usd=result.cost_usd,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            messages=messages,
        )
    else:
        turn.error(_failure_reason(last, obj))
    return result


def _fill(result: ClaudeResult, run: _Run, fmt: str) -> None:
    result.exit_code = run.exit_code
    result.stdout = run.stdout
    result.stderr = run.stderr
    result.args = run.args
    obj = parse_cli_output(run.stdout, "json" if fmt == "text" else fmt)
    result.json = obj
    if obj is None:
        return
    text = obj.get("result")
    result.result = text if isinstance(text, str) else (json.dumps(text) if text is not None else None)
    result.is_error = obj.get("is_error") is True
    cost = obj.get("total_cost_usd")
    result.cost_usd = float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    result.input_tokens = _int(usage.get("input_tokens"))
    result.output_tokens = _int(usage.get("output_tokens"))
    sid = obj.get("session_id")
    result.ok = run.exit_code == 0 and not result.is_error and isinstance(sid, str) and bool(sid)
    result.session_id = sid if result.ok else None


def _int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _failure_reason(run: _Run, obj: Optional[Dict[str, Any]]) -> str:
    """A short reason for ``session.complete`` (same wording as the Node client and sessionctl)."""
    if obj is not None and obj.get("is_error") is True:
        detail = obj.get("result") if isinstance(obj.get("result"), str) else ""
        return _short(f"is_error ({obj.get('subtype') or 'unknown'})" + (f": {detail}" if detail else ""))
    if run.exit_code < 0:
        try:
            name = signal.Signals(-run.exit_code).name
        except ValueError:
            name = f"signal_{-run.exit_code}"
        return f"killed_by_{name}"
    if run.exit_code != 0:
        lines = run.stderr.strip().splitlines()
        tail = lines[-1] if lines else ""
        return _short(f"exit_code_{run.exit_code}" + (f": {tail}" if tail else ""))
    if obj is None:
        return "no_result"
    return "no_session_id"


# -- transcripts ------------------------------------------------------------------------------


def _restore_transcript(turn: Turn, cli_id: str, cwd: str, env: Optional[Mapping[str, str]],
                        note: Callable[[str], None]) -> None:
    """Download the stored transcript when the registry holds more than the local file."""
    stored = turn.transcript
    if not stored or stored.get("cliSessionId") != cli_id:
        return
    size = int(stored.get("size", 0))
    path = transcript_path(cwd, cli_id, env)
    try:
        local = os.path.getsize(path)
    except OSError:
        local = -1
    if size <= 0 or size <= local:
        return
    client = turn.client
    sources = [turn.session_id]
    parent = turn.session.get("parentId")
    if parent:
        sources.append(parent)
    for sid in sources:
        try:
            data = client.transcript_read_all(sid, cli_session_id=cli_id)
        except NotFound:
            continue
        except SessiondError as exc:
            note(f"could not download the transcript of {cli_id}: {exc}")
            return
        try:
            _write_atomic(path, data)
        except OSError as exc:
            note(f"could not write the transcript {path}: {exc}")
        return
    note(f"the registry has no transcript of {cli_id} to restore")


def _write_atomic(path: str, data: bytes) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".sessiond-", suffix=".jsonl.tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _upload_transcript(turn: Turn, cli_id: str, cwd: str, env: Optional[Mapping[str, str]],
                       note: Callable[[str], None]) -> None:
    """Upload the bytes of ``cli_id``'s transcript past what the registry stores."""
    path = transcript_path(cwd, cli_id, env)
    offset = turn.stored_transcript_size(cli_id)
    try:
        f = open(path, "rb")
    except OSError:
        note(f"no local transcript to upload for {cli_id} ({path})")
        return
    client = turn.client
    with f:
        attempts = 0
        while True:
            f.seek(offset)
            chunk = f.read(CHUNK_BYTES)
            if not chunk:
                return
            try:
                result = client.transcript_append(turn.session_id, turn.lease, cli_id, offset, chunk)
            except Conflict as exc:
                stored = exc.data.get("size")
                attempts += 1
                if not isinstance(stored, int) or stored < 0 or attempts > 3:
                    note(f"could not upload the transcript of {cli_id}: {exc}")
                    return
                offset = stored  # the registry has less than we thought: send from its size
                continue
            except TooLarge as exc:
                note(f"the transcript of {cli_id} is over the registry's limit; not stored: {exc}")
                return
            except SessiondError as exc:
                note(f"could not upload the transcript of {cli_id}: {exc}")
                return
            offset = max(offset + len(chunk), int(result.get("size", 0)))
