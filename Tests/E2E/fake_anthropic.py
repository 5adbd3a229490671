#!/usr/bin/env python3
"""A loopback fake of the Anthropic Messages API for end-to-end tests.

Run:    python3 fake_anthropic.py --port 0 [--log FILE] [--delay-ms N] [--dump-dir DIR]
        prints "LISTENING 127.0.0.1:<port>" on stdout, serves until SIGTERM/SIGINT.
Import: server, port = start_server(port=0, log_path=None, delay_ms=0)
        ...; server.stop()

Stdlib only (http.server + threading); binds 127.0.0.1 only.

Replies are a deterministic function of the conversation in each request, so a
test can tell "context kept" from "context lost":
  * last user text asks "what should you remember" or contains "recall"
      -> "You asked me to remember <w1>, <w2>." listing every `remember <word>`
         found in the earlier user/assistant messages and in ambient context
         (system prompt, role=system messages, <system-reminder> sections;
         see ambient_texts), in order, deduplicated; or
         "I have nothing to remember."
  * last user text contains `remember <word>` -> "OK, I will remember <word>."
  * otherwise -> "Echo: <first 200 chars of last user text> (turns=N)"
    where N counts the user messages that carry plain text.
"Plain text" excludes tool_result blocks and <system-reminder> sections.
A last user text containing `sleep <N>ms` (or --delay-ms) delays the reply;
a streamed one after message_start/content_block_start (with a ping each
second), so a test can interrupt a turn mid-stream.

Requests that are not the main conversation (the CLI's side calls: quota
probes with max_tokens=1, structured-output calls such as session-title
generation) get a short reply (JSON matching the requested schema, or "OK"),
are tagged "side:*" in the log and are never delayed. Replies are computed
per request from its own messages, so side calls cannot disturb turns/recall.
"""

import argparse
import itertools
import json
import os
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOST = "127.0.0.1"
DEFAULT_MODEL = "claude-opus-5-5"  # what CLI 2.1.329 asks for by default

REMEMBER_RE = re.compile(r"remember (\S+)", re.IGNORECASE)
SLEEP_RE = re.compile(r"sleep (\d+)ms", re.IGNORECASE)
REMINDER_RE = re.compile(r"<system-reminder>(.*?)(?:</system-reminder>|\Z)", re.DOTALL)
WORD_STRIP = ".,;:!?\"'`()[]{}<>"
MAX_DELAY_S = 600.0

_ids = itertools.count(1)


# ---------------------------------------------------------------- conversation

def block_texts(content):
    """Plain text of a message's content (str or list of blocks).

    Only `text` blocks count; tool_result/tool_use/image blocks are skipped and
    <system-reminder> sections are removed."""
    if isinstance(content, str):
        parts = [content]
    elif isinstance(content, list):
        parts = [b.get("text", "") for b in content
                 if isinstance(b, dict) and b.get("type") == "text"
                 and isinstance(b.get("text"), str)]
    else:
        parts = []
    cleaned = (REMINDER_RE.sub("", p).strip() for p in parts)
    return "\n".join(p for p in cleaned if p)


def system_text(system):
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(b.get("text", "") for b in system
                         if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


# Words that follow "remember" in the CLI's own prompts (2.1.329 says "if
# asked to remember one of those ..."). Matches in ambient context (system
# prompt, role=system messages, <system-reminder> sections) are ignored when
# the word is one of these, so only real recaps ("remember pineapple") count.
AMBIENT_STOPWORDS = frozenset("""
    a an the one ones this that these those it its them they what which who
    whom whose when where why how to for from of in on at by with about and
    or but not no yes if so as is are was were be been being do does did you
    your yours me my mine we our us he she his her something anything
    everything nothing all any some each every other another more most such
    only just also too very here there then than
""".split())


def ambient_texts(body):
    """Context the CLI adds around the conversation: the system prompt (where
    --append-system-prompt text lands), role=system messages and
    <system-reminder> sections. A recap may arrive in any of them."""
    texts = [system_text(body.get("system"))]
    for m in body.get("messages") or []:
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        raw = content if isinstance(content, str) else system_text(content)
        if m.get("role") == "system":
            texts.append(raw)
        else:
            texts.extend(r.group(1) for r in REMINDER_RE.finditer(raw))
    return texts


def clean_word(raw):
    """'pineapple.' -> 'pineapple', 'plum</tag>' -> 'plum'."""
    return raw.split("<", 1)[0].strip(WORD_STRIP)


def remembered_words(texts, ambient=()):
    """Words after "remember", in order, deduplicated (case-insensitively).
    Ambient texts come first: a recap precedes the live conversation."""
    seen, words = set(), []
    sources = [(t, True) for t in ambient] + [(t, False) for t in texts]
    for text, is_ambient in sources:
        for m in REMEMBER_RE.finditer(text):
            word = clean_word(m.group(1))
            if not word or (is_ambient and word.lower() in AMBIENT_STOPWORDS):
                continue
            if word.lower() not in seen:
                seen.add(word.lower())
                words.append(word)
    return words


def analyse(body):
    """Return (last_user_text, user_turns, history_texts) for a request body."""
    messages = body.get("messages") or []
    user_idx = [i for i, m in enumerate(messages)
                if isinstance(m, dict) and m.get("role") == "user"
                and block_texts(m.get("content"))]
    if not user_idx:
        return "", 0, []
    last = user_idx[-1]
    history = [block_texts(m.get("content")) for m in messages[:last]
               if isinstance(m, dict) and m.get("role") in ("user", "assistant")]
    return block_texts(messages[last].get("content")), len(user_idx), history


def classify(body):
    """'main' for the agent conversation, else 'side:<reason>'.

    Only positive evidence makes a request "side" (replies are stateless, so
    a side call mistaken for main is harmless, while the reverse would break
    a test). Seen with CLI 2.1.329: session-title generation uses structured
    output (output_config.format = json_schema, tools = []), and only runs
    when CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC is unset. Quota probes use
    max_tokens = 1. Note `--tools ""` makes the main request's tools empty,
    so an empty tools list is not a side marker."""
    if (body.get("max_tokens") or 0) <= 1:
        return "side:quota"
    fmt = (body.get("output_config") or {}).get("format")
    if isinstance(fmt, dict):
        return "side:structured"
    return "main"


def reply_for(body, kind):
    last, turns, history = analyse(body)
    if kind != "main":
        return side_reply(body, kind, last)
    low = last.lower()
    if "what should you remember" in low or "recall" in low:
        # A recap prefixed to the question counts as earlier conversation.
        words = remembered_words(history + [last], ambient_texts(body))
        if words:
            return "You asked me to remember %s." % ", ".join(words)
        return "I have nothing to remember."
    m = REMEMBER_RE.search(last)
    if m and clean_word(m.group(1)):
        return "OK, I will remember %s." % clean_word(m.group(1))
    return "Echo: %s (turns=%d)" % (last[:200], turns)


def side_reply(body, kind, last):
    """Short answers for the CLI's side requests."""
    fmt = (body.get("output_config") or {}).get("format") or {}
    if kind == "side:structured":
        return json.dumps(sample_for_schema(fmt.get("schema") or {}))
    return "OK"


def sample_for_schema(schema, depth=0):
    """A small value that satisfies a simple JSON schema (titles etc.)."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return sample_for_schema(schema[key][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {k: sample_for_schema(v, depth + 1) for k, v in props.items()}
    if kind == "array":
        return []
    if kind == "string":
        return "Test session"
    if kind in ("integer", "number"):
        return 0
    if kind == "boolean":
        return False
    return None


def estimate_tokens(obj):
    """Crude but deterministic token estimate: ~4 characters per token."""
    text = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True)
    return max(1, len(text) // 4)


def requested_delay(body, kind, default_ms):
    if kind != "main":
        return 0.0
    last, _, _ = analyse(body)
    m = SLEEP_RE.search(last)
    ms = int(m.group(1)) if m else default_ms
    return min(max(ms, 0) / 1000.0, MAX_DELAY_S)


# ---------------------------------------------------------------- HTTP layer

class FakeAnthropicServer(ThreadingHTTPServer):
    daemon_threads = True          # handler threads never block exit
    allow_reuse_address = True

    def __init__(self, port, log_path=None, delay_ms=0, dump_dir=None):
        super().__init__((HOST, port), Handler)
        self.log_path = log_path
        self.delay_ms = delay_ms
        self.dump_dir = dump_dir
        self.stopping = threading.Event()
        self._log_lock = threading.Lock()
        self._thread = None

    def log_event(self, record):
        if not self.log_path:
            return
        line = json.dumps(record, sort_keys=True, ensure_ascii=False)
        with self._log_lock, open(self.log_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def stop(self):
        """Stop serving (idempotent); wakes delayed replies."""
        self.stopping.set()
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"     # keep-alive, as the CLI expects
    server_version = "fake-anthropic/1"
    timeout = 120                      # idle keep-alive connections end eventually

    def log_message(self, fmt, *args):  # keep stderr quiet
        pass

    # -- helpers
    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send_json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_fake_%d" % next(_ids))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status, etype, message):
        self._send_json(status, {"type": "error",
                                 "error": {"type": etype, "message": message}})

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _event(self, name, obj):
        self._chunk(("event: %s\ndata: %s\n\n" % (name, json.dumps(obj))).encode())

    def _log(self, **rec):
        rec.setdefault("method", self.command)
        rec.setdefault("path", self.path)
        rec["t"] = round(time.time(), 3)
        self.server.log_event(rec)

    # -- routes
    def do_GET(self):
        path = urlsplit(self.path).path.rstrip("/")
        self._log()
        if path == "/v1/models":
            self._send_json(200, {"data": [model_obj(DEFAULT_MODEL)], "has_more": False,
                                  "first_id": DEFAULT_MODEL, "last_id": DEFAULT_MODEL})
        elif path.startswith("/v1/models/"):
            self._send_json(200, model_obj(path.rsplit("/", 1)[1]))
        else:
            self._error(404, "not_found_error", "fake: no route for GET %s" % path)

    def do_HEAD(self):
        self._log()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        path = urlsplit(self.path).path.rstrip("/")
        raw = self._read_body()
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body is not an object")
        except ValueError as exc:
            self._log(error="bad json: %s" % exc)
            self._error(400, "invalid_request_error", "fake: invalid JSON body")
            return
        self._dump(path, body)
        if path == "/v1/messages":
            self._messages(body)
        elif path == "/v1/messages/count_tokens":
            n = estimate_tokens({k: body.get(k) for k in ("system", "messages", "tools")})
            self._log(model=body.get("model"), input_tokens=n)
            self._send_json(200, {"input_tokens": n})
        else:
            self._log()
            self._error(404, "not_found_error", "fake: no route for POST %s" % path)

    def _dump(self, path, body):
        if self.server.dump_dir:
            name = "%06d%s.json" % (next(_ids), path.replace("/", "_"))
            with open(os.path.join(self.server.dump_dir, name), "w", encoding="utf-8") as f:
                json.dump({"path": self.path, "headers": dict(self.headers), "body": body},
                          f, indent=1)

    def _messages(self, body):
        kind = classify(body)
        text = reply_for(body, kind)
        model = body.get("model") or DEFAULT_MODEL
        stream = bool(body.get("stream"))
        last, turns, _ = analyse(body)
        usage = {"input_tokens": estimate_tokens({k: body.get(k) for k in
                                                  ("system", "messages", "tools")}),
                 "output_tokens": estimate_tokens(text),
                 "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0}
        delay = requested_delay(body, kind, self.server.delay_ms)
        self._log(model=model, stream=stream, kind=kind, n_messages=len(body.get("messages") or []),
                  max_tokens=body.get("max_tokens"), turns=turns, last_user_text=last[:500],
                  reply=text, delay_ms=int(delay * 1000))
        msg_id = "msg_fake_%d" % next(_ids)
        if not stream:
            if delay > 0:
                self.server.stopping.wait(delay)
            self._send_json(200, {"id": msg_id, "type": "message", "role": "assistant",
                                  "model": model,
                                  "content": [{"type": "text", "text": text}],
                                  "stop_reason": "end_turn", "stop_sequence": None,
                                  "usage": usage})
            return
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("request-id", "req_fake_%d" % next(_ids))
            self.end_headers()
            start_usage = dict(usage, output_tokens=1)
            self._event("message_start", {"type": "message_start", "message": {
                "id": msg_id, "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": start_usage}})
            self._event("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "text", "text": ""}})
            if delay > 0:
                # Keep the stream visibly alive while "thinking".
                deadline = time.monotonic() + delay
                while not self.server.stopping.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.server.stopping.wait(min(left, 1.0))
                    self._event("ping", {"type": "ping"})
            # Two deltas so clients exercise incremental assembly.
            half = len(text) // 2
            for piece in (text[:half], text[half:]):
                if piece:
                    self._event("content_block_delta", {
                        "type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": piece}})
            self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
            self._event("message_delta", {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]}})
            self._event("message_stop", {"type": "message_stop"})
            self._chunk(b"")  # terminating zero-length chunk
        except (BrokenPipeError, ConnectionResetError) as exc:
            self._log(event="client_disconnected", error=type(exc).__name__)
            self.close_connection = True


def model_obj(model_id):
    return {"type": "model", "id": model_id, "display_name": model_id,
            "created_at": "2025-01-01T00:00:00Z"}


# ---------------------------------------------------------------- entry points

def start_server(port=0, log_path=None, delay_ms=0, dump_dir=None):
    """Start the fake in a daemon thread; return (server, port). Stop with server.stop()."""
    server = FakeAnthropicServer(port, log_path=log_path, delay_ms=delay_ms, dump_dir=dump_dir)
    server._thread = threading.Thread(target=server.serve_forever,
                                      kwargs={"poll_interval": 0.2},
                                      name="fake-anthropic", daemon=True)
    server._thread.start()
    return server, server.server_address[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", help="append one JSON line per request to this file")
    ap.add_argument("--delay-ms", type=int,
                    default=int(os.environ.get("FAKE_ANTHROPIC_DELAY_MS", "0")),
                    help="delay each main streamed reply (env FAKE_ANTHROPIC_DELAY_MS)")
    ap.add_argument("--dump-dir", help="write every request body as a JSON file here")
    args = ap.parse_args(argv)

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    server, port = start_server(args.port, args.log, args.delay_ms, args.dump_dir)
    print("LISTENING %s:%d" % (HOST, port), flush=True)
    while not done.wait(0.5):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
