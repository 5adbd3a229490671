#!/usr/bin/env bash
# Re-verify the Claude Code CLI facts that sessiond relies on (README.md a-d,
# plus the append-only transcript check h), using the real CLI against the
# loopback fake Messages API. Offline; everything lives in a temp dir.
#
#   Tests/E2E/check_cli.sh            # CLI from fetch_claude.py (cached)
#   CLAUDE_BIN=/path/claude Tests/E2E/check_cli.sh
#
# Exits 0 when every check passes, 1 otherwise. Last line: "N passed, N failed".
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
CLAUDE_BIN="${CLAUDE_BIN:-$(timeout 900 python3 "$HERE/fetch_claude.py")}" || {
  echo "check_cli: cannot get the claude binary" >&2; exit 1; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/sessiond-e2e.XXXXXX")"
TMP="$(cd "$TMP" && pwd -P)"
FAKE_PID=""
cleanup() {
  if [[ -n "$FAKE_PID" ]]; then kill "$FAKE_PID" 2>/dev/null; wait "$FAKE_PID" 2>/dev/null; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

# --- fake API ---------------------------------------------------------------
python3 "$HERE/fake_anthropic.py" --port 0 --log "$TMP/fake.log" >"$TMP/fake.out" 2>"$TMP/fake.err" &
FAKE_PID=$!
for _ in $(seq 100); do grep -q '^LISTENING ' "$TMP/fake.out" 2>/dev/null && break; sleep 0.1; done
PORT="$(sed -n 's/^LISTENING 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$TMP/fake.out")"
[[ -n "$PORT" ]] || { echo "check_cli: fake API did not start" >&2; cat "$TMP/fake.err" >&2; exit 1; }

# --- helpers ----------------------------------------------------------------
PASS=0; FAIL=0
ok()   { PASS=$((PASS + 1)); echo "ok   - $*"; }
fail() { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }

# claude HOME [CLAUDE_CONFIG_DIR|""] args...  (cwd = $WORK; stdout/stderr to $OUT/$ERR)
claude() {
  local home="$1" ccd="$2"; shift 2
  (cd "$WORK" && env -i PATH=/usr/bin:/bin HOME="$home" ${ccd:+CLAUDE_CONFIG_DIR="$ccd"} \
      ANTHROPIC_BASE_URL="http://127.0.0.1:$PORT" ANTHROPIC_API_KEY=test \
      DISABLE_TELEMETRY=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1 \
      timeout 120 "$CLAUDE_BIN" "$@" </dev/null >"$OUT" 2>"$ERR")
}
# jget FILE EXPR: evaluate a Python expression on the JSON document `d`.
jget() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null; }

WORK="$TMP/work/my_project.v1"      # '_' and '.' exercise the path mangling
mkdir -p "$WORK" "$TMP/home1" "$TMP/home2" "$TMP/home3" "$TMP/config3"
MANGLED="$(python3 -c 'import re,sys; print(re.sub(r"[^A-Za-z0-9]", "-", sys.argv[1]))' "$WORK")"
OUT="$TMP/out"; ERR="$TMP/err"
echo "# claude: $CLAUDE_BIN ($(timeout 30 "$CLAUDE_BIN" --version 2>/dev/null)); fake on port $PORT"

# --- a: -p --output-format json prints one result object -------------------
claude "$TMP/home1" "" -p "remember pineapple" --output-format json; rc=$?
SID="$(jget "$OUT" 'd["session_id"]')"
if [[ $rc -eq 0 && -n "$SID" ]] \
   && [[ "$(jget "$OUT" 'd["type"], d["subtype"], d["is_error"], d["result"]')" == "('result', 'success', False, 'OK, I will remember pineapple.')" ]] \
   && [[ "$(jget "$OUT" 'isinstance(d["total_cost_usd"], float) and d["total_cost_usd"] > 0 and d["usage"]["input_tokens"] > 0 and d["usage"]["output_tokens"] > 0')" == "True" ]]; then
  ok "a: json result object (session_id=$SID, cost=$(jget "$OUT" 'd["total_cost_usd"]'))"
else
  fail "a: rc=$rc stdout=$(head -c 400 "$OUT") stderr=$(head -c 400 "$ERR")"
fi

# --- c (part 1): transcript location --------------------------------------
TRANSCRIPT="$TMP/home1/.claude/projects/$MANGLED/$SID.jsonl"
if [[ -s "$TRANSCRIPT" ]]; then ok "c: transcript at \$HOME/.claude/projects/$MANGLED/<id>.jsonl"
else fail "c: no transcript at $TRANSCRIPT; found: $(cd "$TMP/home1" && find . -name '*.jsonl')"; fi
cp "$TRANSCRIPT" "$TMP/transcript.before" 2>/dev/null

# --- b: --resume keeps context and the id ----------------------------------
claude "$TMP/home1" "" -p "what should you remember?" --resume "$SID" --output-format json; rc=$?
if [[ $rc -eq 0 && "$(jget "$OUT" 'd["result"], d["session_id"], d["is_error"]')" == "('You asked me to remember pineapple.', '$SID', False)" ]]; then
  ok "b: resume recalls pineapple and keeps session_id"
else
  fail "b: rc=$rc stdout=$(head -c 400 "$OUT") stderr=$(head -c 400 "$ERR")"
fi

# --- h: the resumed turn only appended to the transcript --------------------
if python3 -c 'import sys; a=open(sys.argv[1],"rb").read(); b=open(sys.argv[2],"rb").read(); sys.exit(not (len(b) > len(a) and b.startswith(a)))' \
     "$TMP/transcript.before" "$TRANSCRIPT" 2>/dev/null; then
  ok "h: transcript is append-only across a resumed turn"
else
  fail "h: old transcript is not a prefix of the new one"
fi

# --- c (part 2): a transcript copied into a brand-new HOME resumes ---------
mkdir -p "$TMP/home2/.claude/projects/$MANGLED"
cp "$TMP/transcript.before" "$TMP/home2/.claude/projects/$MANGLED/$SID.jsonl" 2>/dev/null
claude "$TMP/home2" "" -p "what should you remember?" --resume "$SID" --output-format json; rc=$?
if [[ $rc -eq 0 && "$(jget "$OUT" 'd["result"], d["session_id"]')" == "('You asked me to remember pineapple.', '$SID')" ]]; then
  ok "c: copied transcript resumes with context in a fresh HOME"
else
  fail "c: copy-resume rc=$rc stdout=$(head -c 400 "$OUT") stderr=$(head -c 400 "$ERR")"
fi

# --- c (part 3): CLAUDE_CONFIG_DIR moves the transcript ---------------------
claude "$TMP/home3" "$TMP/config3" -p "remember kiwi" --output-format json; rc=$?
SID3="$(jget "$OUT" 'd["session_id"]')"
if [[ $rc -eq 0 && -n "$SID3" && -s "$TMP/config3/projects/$MANGLED/$SID3.jsonl" && ! -e "$TMP/home3/.claude/projects" ]]; then
  ok "c: CLAUDE_CONFIG_DIR puts it at \$CLAUDE_CONFIG_DIR/projects/$MANGLED/<id>.jsonl"
else
  fail "c: CLAUDE_CONFIG_DIR rc=$rc; files: $(cd "$TMP" && find home3 config3 -name '*.jsonl')"
fi

# --- d: unknown id -> exit 1, message on stderr, nothing on stdout (json) ---
UNKNOWN="00000000-0000-4000-8000-000000000000"
claude "$TMP/home1" "" -p "hello" --resume "$UNKNOWN" --output-format json; rc=$?
if [[ $rc -eq 1 && ! -s "$OUT" ]] && grep -qx "No conversation found with session ID: $UNKNOWN" "$ERR"; then
  ok "d: unknown id exits 1, stderr 'No conversation found with session ID: <id>', empty stdout"
else
  fail "d: rc=$rc stdout=$(head -c 400 "$OUT") stderr=$(head -c 400 "$ERR")"
fi

echo "check_cli: $PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]
