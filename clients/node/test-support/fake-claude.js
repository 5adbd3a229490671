#!/usr/bin/env node
// A stand-in for the `claude` CLI (print mode), for runClaude tests. It mimics what runClaude relies on:
//   - `-p/--print`, a positional prompt (or stdin), `--output-format text|json|stream-json`, `--verbose`,
//     `--resume <id>`, `--fork-session`;
//   - the result object {type, subtype, is_error, result, session_id, total_cost_usd, usage};
//   - a transcript JSONL at <config>/projects/<cwd with non-alphanumerics as '-'>/<id>.jsonl, where <config> is
//     $CLAUDE_CONFIG_DIR or $HOME/.claude;
//   - `No conversation found with session ID: <id>` and exit 1 when the transcript to resume does not exist.
// The reply is "Echo: <prompt, first 200 chars> (turns=N)", N counting the user turns in the transcript, so a
// test can tell a resumed conversation from a fresh one.
// Triggers in the prompt: "FAIL" → is_error true with subtype success; "CRASH" → killed by SIGKILL;
// "SLEEP <ms>" → waits first; "GARBAGE" → prints non-JSON.
// FAKE_CLAUDE_LOG=<file> appends one JSON line per run: {argv, prompt, cwd, home}.

import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
let format = 'text';
let resume = null;
let fork = false;
let verbose = false;
let prompt = null;
const VALUE_FLAGS = new Set(['--model', '--append-system-prompt', '--system-prompt', '--max-turns', '--permission-mode']);
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--output-format') format = args[++i];
  else if (a.startsWith('--output-format=')) format = a.slice('--output-format='.length);
  else if (a === '--resume' || a === '-r') resume = args[++i];
  else if (a === '--fork-session') fork = true;
  else if (a === '--verbose') verbose = true;
  else if (a === '-p' || a === '--print') continue;
  else if (VALUE_FLAGS.has(a)) i++;
  else if (a === '--') {
    prompt ??= args[i + 1] ?? null;
    break;
  } else if (a.startsWith('-')) continue;
  else prompt ??= a;
}
if (prompt === null) {
  try {
    prompt = fs.readFileSync(0, 'utf8');
  } catch {
    prompt = '';
  }
}

const cwd = process.cwd();
const configDir = process.env.CLAUDE_CONFIG_DIR || path.join(process.env.HOME, '.claude');
const projectDir = path.join(configDir, 'projects', cwd.replace(/[^A-Za-z0-9]/g, '-'));
const transcript = (id) => path.join(projectDir, `${id}.jsonl`);

if (process.env.FAKE_CLAUDE_LOG) {
  fs.appendFileSync(
    process.env.FAKE_CLAUDE_LOG,
    `${JSON.stringify({ argv: args, prompt, cwd, home: process.env.HOME ?? null })}\n`,
  );
}

const sleep = /SLEEP (\d+)/.exec(prompt);
if (sleep) await new Promise((r) => setTimeout(r, Number(sleep[1])));
if (prompt.includes('CRASH')) process.kill(process.pid, 'SIGKILL');
if (prompt.includes('GARBAGE')) {
  process.stdout.write('this is not json\n');
  process.exit(0);
}

let id;
let previous = '';
if (resume) {
  if (!fs.existsSync(transcript(resume))) {
    process.stderr.write(`No conversation found with session ID: ${resume}\n`);
    process.exit(1);
  }
  previous = fs.readFileSync(transcript(resume), 'utf8');
  id = fork ? randomUUID() : resume;
} else {
  id = randomUUID();
}
const turns = previous.split('\n').filter((l) => l.includes('"type":"user"')).length + 1;
const isError = prompt.includes('FAIL');
const reply = isError ? 'API Error: the fake was asked to fail' : `Echo: ${prompt.slice(0, 200)} (turns=${turns})`;

if (!isError) {
  fs.mkdirSync(projectDir, { recursive: true });
  const lines =
    JSON.stringify({ type: 'user', sessionId: id, message: { role: 'user', content: prompt } }) +
    '\n' +
    JSON.stringify({ type: 'assistant', sessionId: id, message: { role: 'assistant', content: reply } }) +
    '\n';
  if (fork || !resume) fs.writeFileSync(transcript(id), previous + lines);
  else fs.appendFileSync(transcript(id), lines);
}

const result = {
  type: 'result',
  subtype: 'success',
  is_error: isError,
  duration_ms: 12,
  num_turns: 1,
  result: reply,
  session_id: id,
  total_cost_usd: 0.0125,
  usage: { input_tokens: 11, output_tokens: 7, cache_read_input_tokens: 0 },
};
const init = { type: 'system', subtype: 'init', session_id: id, cwd };
const assistant = { type: 'assistant', session_id: id, message: { role: 'assistant', content: [{ type: 'text', text: reply }] } };

if (format === 'json') {
  process.stdout.write(`${JSON.stringify(verbose ? [init, assistant, result] : result)}\n`);
} else if (format === 'stream-json') {
  for (const event of [init, assistant, result]) process.stdout.write(`${JSON.stringify(event)}\n`);
} else {
  process.stdout.write(`${reply}\n`);
}
process.exit(isError ? 1 : 0);
