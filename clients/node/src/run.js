// runClaude(): one Claude Code CLI turn under a sessiond lease (the semantics of `sessionctl run`).

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';

import { Client, DEFAULT_CLIENT_NAME } from './client.js';
import { Conflict, NotFound } from './errors.js';
import { LeaseKeeper, shortReason } from './turn.js';

export const NO_CONVERSATION_MARKER = 'No conversation found with session ID:';
export const RECAP_HEADER = '[Recap of the earlier conversation, which could not be resumed]';
export const RECAP_FOOTER = '[End of recap]';
export const RECAP_MAX_CHARS = 8000;
export const RECAP_TAIL_MESSAGES = 20;
const DEFAULT_WAIT_SECONDS = 600;
const CHUNK_BYTES = 4 * 1024 * 1024;

/** Flags `runClaude` manages itself and refuses from the caller. */
const FORBIDDEN_FLAGS = new Set(['--resume', '-r', '--continue', '-c', '--session-id']);

/** Claude Code flags that take a value (the next argument), for finding the positional prompt. */
const VALUE_FLAGS = new Set([
  '--add-dir', '--agent', '--agents', '--allowedTools', '--allowed-tools', '--append-system-prompt',
  '--append-system-prompt-file', '--betas', '--debug', '-d', '--disallowedTools', '--disallowed-tools',
  '--fallback-model', '--input-format', '--json-schema', '--max-budget-usd', '--max-turns', '--mcp-config',
  '--model', '--output-format', '--permission-mode', '--permission-prompt-tool', '--plugin-dir', '--resume', '-r',
  '--session-id', '--setting-sources', '--settings', '--system-prompt', '--system-prompt-file', '--tools',
]);

// ---- pure helpers (exported for tests and for other tools) ----

/** `<config>/projects/<cwd with every non-alphanumeric character replaced by '-'>/<id>.jsonl`. */
export function transcriptPath(cliSessionId, { cwd = process.cwd(), env = process.env } = {}) {
  const configDir = env.CLAUDE_CONFIG_DIR ? env.CLAUDE_CONFIG_DIR : path.join(env.HOME ?? os.homedir(), '.claude');
  const project = path.resolve(cwd).replace(/[^A-Za-z0-9]/g, '-');
  return path.join(configDir, 'projects', project, `${cliSessionId}.jsonl`);
}

/** The index of the first `--` terminator, or args.length. */
function terminatorIndex(args) {
  const i = args.indexOf('--');
  return i < 0 ? args.length : i;
}

/** Throws if args carry a flag that runClaude manages (`--resume`, `-r`, `--continue`, `-c`, `--session-id`). */
export function checkArgs(args) {
  if (!Array.isArray(args) || args.length === 0 || args.some((a) => typeof a !== 'string')) {
    throw new TypeError('runClaude args must be a non-empty array of strings, starting with the executable');
  }
  const end = terminatorIndex(args);
  for (let i = 1; i < end; i++) {
    const flag = args[i].startsWith('--') ? args[i].split('=')[0] : args[i];
    if (FORBIDDEN_FLAGS.has(flag)) {
      throw new TypeError(`runClaude manages ${flag} itself (the registry decides what to resume); remove it`);
    }
  }
}

/** Finds `--output-format`: `{format, index, inline}` (index of the flag), or `{format: null}`. */
export function findOutputFormat(args) {
  const end = terminatorIndex(args);
  for (let i = 1; i < end; i++) {
    if (args[i] === '--output-format') return { format: args[i + 1] ?? null, index: i, inline: false };
    if (args[i].startsWith('--output-format=')) {
      return { format: args[i].slice('--output-format='.length), index: i, inline: true };
    }
  }
  return { format: null, index: -1, inline: false };
}

/**
 * The prompt: the argument right after `-p`/`--print` if it does not start with `-`; else the first positional
 * argument not consumed by a value-taking flag; else the stdin text. Returns `{prompt, index}` (index -1 for
 * stdin, prompt null when there is none).
 */
export function extractPrompt(args, input) {
  const end = terminatorIndex(args);
  for (let i = 1; i < end; i++) {
    if ((args[i] === '-p' || args[i] === '--print') && i + 1 < args.length) {
      const next = args[i + 1];
      if (i + 1 === end) break; // `-p --` : the prompt is after the terminator
      if (!next.startsWith('-')) return { prompt: next, index: i + 1 };
    }
  }
  for (let i = 1; i < args.length; i++) {
    const arg = args[i];
    if (i < end) {
      if (arg.startsWith('-')) {
        if (!arg.includes('=') && VALUE_FLAGS.has(arg)) i++;
        continue;
      }
      return { prompt: arg, index: i };
    }
    if (i > end) return { prompt: arg, index: i };
  }
  if (input !== undefined && input !== null) {
    return { prompt: Buffer.isBuffer(input) ? input.toString('utf8') : String(input), index: -1 };
  }
  return { prompt: null, index: -1 };
}

/**
 * The recap that prefixes the prompt after a failed resume: the newest messages that fit in
 * RECAP_MAX_CHARS characters (the whole block, header and footer included), oldest first.
 * Returns '' when there is nothing to recap.
 */
export function buildRecap(messages, maxChars = RECAP_MAX_CHARS) {
  if (!Array.isArray(messages) || messages.length === 0) return '';
  const head = `${RECAP_HEADER}\n`;
  const foot = `${RECAP_FOOTER}\n\n`;
  let budget = maxChars - head.length - foot.length;
  const lines = [];
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    const line = `${m.role}: ${m.content}\n`;
    if (line.length <= budget) {
      lines.unshift(line);
      budget -= line.length;
      continue;
    }
    if (lines.length === 0 && budget > `${m.role}: …\n`.length) {
      // The newest message alone is too long: keep its end, which is closest to the new prompt.
      const room = budget - `${m.role}: …\n`.length;
      lines.unshift(`${m.role}: …${String(m.content).slice(-room)}\n`);
    }
    break;
  }
  if (lines.length === 0) return '';
  return head + lines.join('') + foot;
}

/**
 * Picks the result event from the CLI's stdout: a single JSON object, the array form (`--verbose`: the last
 * element with `type == "result"`), or stream-json lines (the last `{"type":"result"}` event).
 */
export function parseCliOutput(stdout, format = 'json') {
  const text = String(stdout ?? '');
  const pickFromLines = () => {
    let found = null;
    for (const line of text.split('\n')) {
      const trimmed = line.trim();
      if (!trimmed.startsWith('{') && !trimmed.startsWith('[')) continue;
      try {
        const value = JSON.parse(trimmed);
        const event = pickResult(value);
        if (event) found = event;
      } catch {
        // not a JSON line
      }
    }
    return found;
  };
  if (format === 'stream-json') return pickFromLines();
  const trimmed = text.trim();
  if (trimmed === '') return null;
  try {
    return pickResult(JSON.parse(trimmed));
  } catch {
    return pickFromLines();
  }
}

function pickResult(value) {
  if (Array.isArray(value)) {
    for (let i = value.length - 1; i >= 0; i--) {
      const item = value[i];
      if (item && typeof item === 'object' && !Array.isArray(item) && item.type === 'result') return item;
    }
    return null;
  }
  if (value && typeof value === 'object' && (value.type === 'result' || value.type === undefined)) return value;
  return null;
}

// ---- I/O helpers ----

async function fileSize(file) {
  try {
    return (await fs.stat(file)).size;
  } catch (err) {
    if (err.code === 'ENOENT') return -1;
    throw err;
  }
}

async function writeAtomically(file, chunks) {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await fs.writeFile(tmp, Buffer.concat(chunks));
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => {});
    throw err;
  }
}

function chunkBytes(client) {
  const frameLimit = Math.min(client.maxFrameBytes ?? Infinity, client.serverInfo?.maxFrameBytes ?? Infinity);
  const fitting = Math.floor(((frameLimit - 4096) * 3) / 4);
  return Math.max(1024, Math.min(CHUNK_BYTES, Number.isFinite(fitting) ? fitting : CHUNK_BYTES));
}

/** Downloads the registry's copy of a transcript when it is larger than the local file. */
async function restoreTranscript(client, { sessionId, parentId, cliSessionId, storedSize, file }) {
  if (!(storedSize > 0)) return { restored: false, reason: 'nothing stored' };
  const localSize = await fileSize(file);
  if (localSize >= storedSize) return { restored: false, reason: 'local copy is current' };
  const limit = chunkBytes(client);
  const download = async (sid) => {
    const chunks = [];
    let offset = 0;
    for (;;) {
      const part = await client.transcriptRead({ sessionId: sid, cliSessionId, offset, limit });
      if (part.data.length > 0) chunks.push(part.data);
      offset += part.data.length;
      if (part.eof || part.data.length === 0 || offset >= part.size) break;
    }
    return chunks;
  };
  let chunks;
  try {
    chunks = await download(sessionId);
  } catch (err) {
    // A fork's first turn resumes the parent's head; its transcript may be stored under the parent.
    if (!(err instanceof NotFound) || !parentId) throw err;
    chunks = await download(parentId);
  }
  await writeAtomically(file, chunks);
  return { restored: true, bytes: chunks.reduce((n, c) => n + c.length, 0) };
}

/** Uploads the local transcript bytes from `offset` (transcript.append under the lease). */
async function uploadTranscript(client, { sessionId, lease, cliSessionId, file, offset }) {
  let handle;
  try {
    handle = await fs.open(file, 'r');
  } catch (err) {
    if (err.code === 'ENOENT') return { uploaded: 0, missing: true };
    throw err;
  }
  try {
    const { size } = await handle.stat();
    const limit = chunkBytes(client);
    let position = Math.max(0, offset);
    let uploaded = 0;
    let retriedConflict = false;
    while (position < size) {
      const length = Math.min(limit, size - position);
      const buffer = Buffer.allocUnsafe(length);
      const { bytesRead } = await handle.read(buffer, 0, length, position);
      if (bytesRead === 0) break;
      try {
        const result = await client.transcriptAppend({
          sessionId, lease, cliSessionId, offset: position, data: buffer.subarray(0, bytesRead),
        });
        uploaded += result.appended ?? bytesRead;
        position += bytesRead;
      } catch (err) {
        // The stored copy is shorter than we thought (data.size): continue from there, once.
        if (err instanceof Conflict && Number.isInteger(err.data?.size) && !retriedConflict && err.data.size < position) {
          retriedConflict = true;
          position = err.data.size;
          continue;
        }
        throw err;
      }
    }
    return { uploaded, missing: false };
  } finally {
    await handle.close();
  }
}

/** Spawns the CLI and collects its output. Never rejects: a spawn failure is reported in `spawnError`. */
function spawnCli(argv, { cwd, env, input, streamLines, onLine, onStderr }) {
  return new Promise((resolve) => {
    const out = [];
    const err = [];
    let child;
    try {
      child = spawn(argv[0], argv.slice(1), {
        cwd,
        env,
        stdio: [input !== undefined && input !== null ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      });
    } catch (spawnError) {
      resolve({ exitCode: 127, signal: null, stdout: '', stderr: `${spawnError.message}\n`, spawnError });
      return;
    }
    const decoder = new StringDecoder('utf8');
    let partial = '';
    const emitLines = (text) => {
      partial += text;
      let nl;
      while ((nl = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, nl).replace(/\r$/, '');
        partial = partial.slice(nl + 1);
        try {
          onLine(line);
        } catch {
          // a callback's error must not break the turn
        }
      }
    };
    child.stdout.on('data', (chunk) => {
      out.push(chunk);
      if (streamLines && onLine) emitLines(decoder.write(chunk));
    });
    child.stderr.on('data', (chunk) => {
      err.push(chunk);
      onStderr?.(chunk);
    });
    if (child.stdin) {
      child.stdin.on('error', () => {}); // EPIPE when the CLI does not read its stdin
      child.stdin.end(Buffer.isBuffer(input) ? input : String(input));
    }
    let spawnError = null;
    child.on('error', (e) => {
      spawnError = e;
    });
    child.on('close', (code, signal) => {
      if (streamLines && onLine) {
        emitLines(decoder.end());
        if (partial !== '') {
          const line = partial;
          partial = '';
          try {
            onLine(line);
          } catch {
            // ignore
          }
        }
      }
      let exitCode = code;
      if (exitCode === null) exitCode = signal ? 128 + (os.constants.signals[signal] ?? 0) : 1;
      // A CLI that could not be started: exit codes like a shell's (127 not found, 126 not executable).
      if (spawnError) exitCode = spawnError.code === 'ENOENT' ? 127 : 126;
      const stderr = Buffer.concat(err).toString('utf8') + (spawnError ? `${spawnError.message}\n` : '');
      resolve({ exitCode, signal, stdout: Buffer.concat(out).toString('utf8'), stderr, spawnError });
    });
  });
}

/** Why a CLI run failed, as a short reason for `session.complete`. */
function failureReason(run, parsed) {
  if (run.spawnError) return shortReason(`spawn_failed: ${run.spawnError.code ?? run.spawnError.message}`);
  if (parsed?.is_error === true) {
    const detail = typeof parsed.result === 'string' && parsed.result !== '' ? `: ${parsed.result}` : '';
    return shortReason(`is_error (${parsed.subtype ?? 'unknown'})${detail}`);
  }
  if (run.signal) return `killed_by_${run.signal}`;
  if (run.exitCode !== 0) {
    const lastLine = run.stderr.trim().split('\n').pop() ?? '';
    return shortReason(`exit_code_${run.exitCode}${lastLine ? `: ${lastLine}` : ''}`);
  }
  if (!parsed) return 'no_result';
  return 'no_session_id';
}

/**
 * Runs the Claude Code CLI for one turn under a sessiond lease: acquire, restore the transcript, run with
 * `--resume` when told to, upload the new transcript bytes, complete, and always release the lease.
 * See index.d.ts `RunClaudeOptions` and `RunClaudeResult`.
 */
export async function runClaude(args, opts = {}) {
  checkArgs(args);
  const env = opts.env ?? process.env;
  const cwd = path.resolve(opts.cwd ?? process.cwd());
  const onResumeFailure = opts.onResumeFailure ?? 'recap';
  if (!['recap', 'fresh', 'fail'].includes(onResumeFailure)) {
    throw new TypeError(`onResumeFailure must be recap, fresh or fail, not ${JSON.stringify(onResumeFailure)}`);
  }
  const history = opts.history ?? true;
  const log = opts.log ?? ((line) => process.stderr.write(`sessiond: ${line}\n`));
  const waitSeconds = opts.wait ?? DEFAULT_WAIT_SECONDS;
  const waitMs = Math.max(0, Math.round(waitSeconds * 1000));
  const input = opts.input;

  const { format: requestedFormat, index: formatIndex, inline: formatInline } = findOutputFormat(args);
  const mode = requestedFormat === null || requestedFormat === 'text' ? 'text' : requestedFormat;
  const { prompt, index: promptIndex } = extractPrompt(args, input);

  const ownClient = !opts.client;
  const client =
    opts.client ??
    (await Client.connect({
      addr: opts.addr ?? (env.SESSIOND_ADDR || undefined),
      token: opts.token ?? (env.SESSIOND_TOKEN || undefined),
      clientName: opts.clientName ?? DEFAULT_CLIENT_NAME,
      timeoutMs: opts.timeoutMs,
      env,
    }));
  const clientName = opts.clientName ?? client.clientName ?? DEFAULT_CLIENT_NAME;
  const holder = opts.holder ?? `${clientName}@${os.hostname()} pid ${process.pid}`;

  try {
    let key = opts.key ?? (env.SESSIOND_KEY || `cwd:${cwd}`);
    if (opts.fork) {
      const parent = await client.get({ key });
      const forkKey = opts.forkKey ?? `${key}:fork:${randomBytes(4).toString('hex')}`;
      await client.fork({ sessionId: parent.session.id, key: forkKey });
      key = forkKey;
    }

    const acquireParams = { key, tool: 'claude', cwd, holder, waitMs };
    if (opts.leaseSeconds !== undefined) acquireParams.leaseSeconds = opts.leaseSeconds;
    if (opts.ttlSeconds !== undefined) acquireParams.ttlSeconds = opts.ttlSeconds;
    if (opts.metadata !== undefined) acquireParams.metadata = opts.metadata;
    if (opts.labels !== undefined) acquireParams.labels = opts.labels;
    const acquired = await client.acquire(acquireParams);

    return await runUnderLease(client, acquired, {
      args, cwd, env, input, mode, formatIndex, formatInline, prompt, promptIndex, history, onResumeFailure,
      log, key, leaseSeconds: opts.leaseSeconds, onLine: opts.onLine, onStderr: opts.onStderr,
    });
  } finally {
    if (ownClient) await client.close();
  }
}

/** Builds the CLI argv for one attempt. */
function buildArgv(args, { mode, formatIndex, formatInline, promptIndex, promptText, resumeId, fork }) {
  const argv = [...args];
  if (promptText !== undefined && promptIndex >= 0) argv[promptIndex] = promptText;
  if (mode === 'text') {
    if (formatIndex >= 0) {
      if (formatInline) argv[formatIndex] = '--output-format=json';
      else argv[formatIndex + 1] = 'json';
    }
  }
  const injected = [];
  if (resumeId) {
    injected.push('--resume', resumeId);
    if (fork) injected.push('--fork-session');
  }
  if (mode === 'text' && formatIndex < 0) injected.push('--output-format', 'json');
  argv.splice(1, 0, ...injected);
  return argv;
}

async function runUnderLease(client, acquired, ctx) {
  const { cwd, env, log, key } = ctx;
  const sessionId = acquired.session.id;
  const parentId = acquired.session.parentId;
  const keeper = new LeaseKeeper(client, sessionId, acquired.lease, {
    leaseSeconds: ctx.leaseSeconds,
    onError: (err) => log(`could not renew the lease on ${key}: ${err.message}`),
  }).start();

  let leaseOpen = true; // whether we still hold a lease that must be given back
  let registryDown = false; // after a failed registry call, record nothing more (and say so)
  const record = async (what, fn) => {
    if (registryDown) {
      log(`not recorded (registry unreachable): ${what}`);
      return undefined;
    }
    try {
      return await fn();
    } catch (err) {
      log(`could not record ${what} for ${key}: ${err.message}`);
      if (err.reason === 'connection_closed' || err.reason === 'timeout' || err.reason === 'protocol_error') {
        registryDown = true;
      }
      return undefined;
    }
  };

  let decision = acquired.decision;
  let stored = acquired.transcript;
  let promptText; // the prompt as sent this attempt (with a recap), if changed
  let input = ctx.input;
  let recovered = null;
  let last;
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      const resumeId = attempt === 0 && decision?.action === 'resume' ? decision.cliSessionId : null;
      const fork = resumeId ? decision.fork === true : false;
      if (resumeId) {
        const file = transcriptPath(resumeId, { cwd, env });
        const storedSize = stored && stored.cliSessionId === resumeId ? stored.size : 0;
        try {
          await restoreTranscript(client, { sessionId, parentId, cliSessionId: resumeId, storedSize, file });
        } catch (err) {
          log(`could not restore the transcript of ${resumeId}: ${err.message}`);
        }
      }
      const argv = buildArgv(ctx.args, {
        mode: ctx.mode, formatIndex: ctx.formatIndex, formatInline: ctx.formatInline,
        promptIndex: ctx.promptIndex, promptText, resumeId, fork,
      });
      const run = await spawnCli(argv, {
        cwd, env, input, streamLines: ctx.mode === 'stream-json', onLine: ctx.onLine, onStderr: ctx.onStderr,
      });
      const parsed = parseCliOutput(run.stdout, ctx.mode === 'stream-json' ? 'stream-json' : 'json');
      const resultText = typeof parsed?.result === 'string' ? parsed.result : null;
      last = {
        exitCode: run.exitCode,
        result: resultText,
        sessionId: null,
        json: parsed,
        stdout: run.stdout,
        stderr: run.stderr,
        key,
        registrySessionId: sessionId,
        decision: acquired.decision,
        recovered,
      };

      const resumeFailed =
        resumeId !== null && (run.stderr.includes(NO_CONVERSATION_MARKER) || run.stdout.includes(NO_CONVERSATION_MARKER));
      const succeeded =
        !resumeFailed &&
        !run.spawnError &&
        run.exitCode === 0 &&
        parsed !== null &&
        parsed.is_error !== true &&
        typeof parsed.session_id === 'string' &&
        parsed.session_id !== '';

      if (succeeded) {
        const cliSessionId = parsed.session_id;
        last.sessionId = cliSessionId;
        await keeper.stop();
        // Upload the new transcript bytes under the lease, before completing.
        const sameId = resumeId !== null && cliSessionId === resumeId;
        const offset = sameId && stored && stored.cliSessionId === cliSessionId ? stored.size : 0;
        const file = transcriptPath(cliSessionId, { cwd, env });
        const upload = await record(`the transcript of ${cliSessionId}`, () =>
          uploadTranscript(client, { sessionId, lease: keeper.lease, cliSessionId, file, offset }),
        );
        if (upload?.missing) log(`no local transcript at ${file}; nothing uploaded`);
        const params = { sessionId, lease: keeper.lease, outcome: 'ok', cliSessionId };
        if (typeof parsed.total_cost_usd === 'number') params.costUsd = parsed.total_cost_usd;
        if (Number.isInteger(parsed.usage?.input_tokens)) params.inputTokens = parsed.usage.input_tokens;
        if (Number.isInteger(parsed.usage?.output_tokens)) params.outputTokens = parsed.usage.output_tokens;
        if (ctx.history) {
          const messages = [];
          if (ctx.prompt !== null) messages.push({ role: 'user', content: ctx.prompt });
          messages.push({ role: 'assistant', content: resultText ?? '' });
          params.messages = messages;
        }
        const done = await record(`the turn (cli session ${cliSessionId})`, () => client.complete(params));
        if (done) leaseOpen = false;
        return last;
      }

      if (resumeFailed && attempt === 0 && ctx.onResumeFailure !== 'fail') {
        await keeper.stop();
        const kept = await record(`the failed resume of ${resumeId}`, () =>
          client.complete({
            sessionId, lease: keeper.lease, outcome: 'resume_failed', reason: 'no_conversation_found', keepLease: true,
          }),
        );
        if (!kept?.lease) {
          if (kept) leaseOpen = false;
          return last;
        }
        keeper.setLease(kept.lease);
        keeper.start();
        decision = kept.decision ?? { action: 'fresh', reason: 'resume_failed' };
        stored = undefined;
        recovered = ctx.onResumeFailure;
        if (ctx.onResumeFailure === 'recap') {
          const page = await record('nothing (reading the history for the recap failed)', () =>
            client.messagesList({ sessionId, tail: RECAP_TAIL_MESSAGES }),
          );
          const recap = buildRecap(page?.messages ?? []);
          if (recap && ctx.prompt !== null) {
            if (ctx.promptIndex >= 0) promptText = recap + ctx.prompt;
            else input = recap + ctx.prompt;
          } else if (recap) {
            log('no prompt found to prefix the recap to; starting fresh without it');
          }
        }
        continue;
      }

      await keeper.stop();
      const params = resumeFailed
        ? { sessionId, lease: keeper.lease, outcome: 'resume_failed', reason: 'no_conversation_found' }
        : { sessionId, lease: keeper.lease, outcome: 'error', reason: failureReason(run, parsed) };
      const done = await record(`the failed turn (${params.reason})`, () => client.complete(params));
      if (done) leaseOpen = false;
      return last;
    }
    return last;
  } finally {
    await keeper.stop();
    if (leaseOpen) {
      if (registryDown) {
        log(`could not release the lease on ${key}; it expires at ${keeper.lease?.expiresAt ?? 'its expiry'}`);
      } else {
        try {
          await client.release({ sessionId, lease: keeper.lease });
        } catch (err) {
          log(`could not release the lease on ${key}: ${err.message}`);
        }
      }
    }
  }
}
