// runClaude() with a fake `claude` (test-support/fake-claude.js) against a real sessiond.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { Client, LeaseHeld, RECAP_HEADER, runClaude, transcriptPath, turn } from '../index.js';
import { FAKE_CLAUDE, makeTempDir, serverSkipReason, sleep, startServer } from '../test-support/helpers.js';

const skip = serverSkipReason();
let uniq = 0;

/** The reason of the newest turn that completed with `error` (recorded in the audit log). */
async function lastErrorReason(client, sessionId) {
  const { entries } = await client.auditList({ sessionId, action: 'turn.complete' });
  return entries.find((e) => e.outcome === 'failed')?.detail?.reason;
}

describe('runClaude', { skip }, () => {
  let server;
  let client;
  let root;
  before(async () => {
    fs.chmodSync(FAKE_CLAUDE, 0o755);
    server = await startServer();
    client = await Client.connect({ addr: server.addr, timeoutMs: 10_000 });
    root = await makeTempDir('sessiond-node-run-');
  });
  after(async () => {
    await client?.close();
    await server?.stop();
    if (root) await fsp.rm(root, { recursive: true, force: true });
  });

  /** A fresh project: a cwd, a HOME, a log of the fake's invocations, and run options. */
  async function project(name = 'p') {
    const dir = path.join(root, `${name}-${++uniq}`);
    const cwd = path.join(dir, 'work dir.x');
    const home = path.join(dir, 'home');
    await fsp.mkdir(cwd, { recursive: true });
    await fsp.mkdir(home, { recursive: true });
    const logFile = path.join(dir, 'fake.log');
    const env = { PATH: process.env.PATH, HOME: home, FAKE_CLAUDE_LOG: logFile };
    const logs = [];
    return {
      cwd, home, env, logs,
      key: `run:${name}:${uniq}`,
      opts: (extra = {}) => ({ client, cwd, env, key: `run:${name}:${uniq}`, wait: 5, log: (l) => logs.push(l), ...extra }),
      calls: () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l)) : []),
    };
  }

  test('two turns: the second resumes; transcript uploaded; history recorded', async () => {
    const p = await project('two');
    const r1 = await runClaude([FAKE_CLAUDE, '-p', 'hello there'], p.opts());
    assert.equal(r1.exitCode, 0, r1.stderr);
    assert.equal(r1.result, 'Echo: hello there (turns=1)');
    assert.match(r1.sessionId, /^[0-9a-f-]{36}$/);
    assert.equal(r1.json.session_id, r1.sessionId);
    assert.deepEqual(p.calls()[0].argv, ['--output-format', 'json', '-p', 'hello there']);

    const r2 = await runClaude([FAKE_CLAUDE, '-p', 'again'], p.opts());
    assert.equal(r2.exitCode, 0, r2.stderr);
    assert.equal(r2.result, 'Echo: again (turns=2)');
    assert.equal(r2.sessionId, r1.sessionId);
    assert.deepEqual(p.calls()[1].argv, ['--resume', r1.sessionId, '--output-format', 'json', '-p', 'again']);

    const { session } = await client.get({ key: p.key });
    assert.equal(session.cliSessionId, r1.sessionId);
    assert.equal(session.turnCount, 2);
    assert.equal(session.resumeSuccesses, 1);
    assert.equal(session.costUsd, 0.025);
    assert.equal(session.inputTokens, 22);
    assert.equal(session.outputTokens, 14);
    assert.equal(session.cwd, p.cwd);
    assert.equal(session.tool, 'claude');
    assert.equal(session.lease, undefined);
    const { messages } = await client.messagesList({ sessionId: session.id });
    assert.deepEqual(messages.map((m) => [m.role, m.content]), [
      ['user', 'hello there'], ['assistant', 'Echo: hello there (turns=1)'], ['user', 'again'], ['assistant', 'Echo: again (turns=2)'],
    ]);
    const local = fs.readFileSync(transcriptPath(r1.sessionId, { cwd: p.cwd, env: p.env }));
    const stored = await client.transcriptRead({ sessionId: session.id, cliSessionId: r1.sessionId });
    assert.ok(stored.data.equals(local), 'the registry holds the whole transcript');
    assert.deepEqual(p.logs, []);
  });

  test('the holder names the client, host and pid; the default key is cwd:<cwd>', async () => {
    const p = await project('holder');
    const key = `cwd:${p.cwd}`;
    const running = runClaude([FAKE_CLAUDE, '-p', 'SLEEP 500 hi'], { client, cwd: p.cwd, env: p.env, log: () => {} });
    let finished = false;
    running.finally(() => (finished = true));
    let holder;
    while (holder === undefined && !finished) {
      await sleep(25);
      holder = await client.get({ key }).then((r) => r.session.lease?.holder, () => undefined);
    }
    const r = await running;
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(holder, `sessiond-client-node@${os.hostname()} pid ${process.pid}`);
    const { session } = await client.get({ key });
    assert.equal(session.cliSessionId, r.sessionId);
    assert.equal(session.lease, undefined);
  });

  test('SESSIOND_KEY sets the key', async () => {
    const p = await project('envkey');
    const r = await runClaude([FAKE_CLAUDE, '-p', 'k'], { client, cwd: p.cwd, env: { ...p.env, SESSIOND_KEY: `${p.key}:env` }, log: () => {} });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal((await client.get({ key: `${p.key}:env` })).session.cliSessionId, r.sessionId);
  });

  test('transcript restore on a new HOME', async () => {
    const p = await project('restore');
    const r1 = await runClaude([FAKE_CLAUDE, '-p', 'remember kiwi'], p.opts());
    assert.equal(r1.exitCode, 0, r1.stderr);
    const oldFile = transcriptPath(r1.sessionId, { cwd: p.cwd, env: p.env });
    const before = fs.readFileSync(oldFile);

    const home2 = path.join(path.dirname(p.home), 'home2');
    await fsp.mkdir(home2);
    const env2 = { ...p.env, HOME: home2 };
    const newFile = transcriptPath(r1.sessionId, { cwd: p.cwd, env: env2 });
    assert.equal(fs.existsSync(newFile), false);
    const r2 = await runClaude([FAKE_CLAUDE, '-p', 'what was it'], p.opts({ env: env2 }));
    assert.equal(r2.exitCode, 0, r2.stderr);
    assert.equal(r2.result, 'Echo: what was it (turns=2)', 'resumed with the restored context');
    assert.equal(r2.sessionId, r1.sessionId);
    const restored = fs.readFileSync(newFile);
    assert.ok(restored.subarray(0, before.length).equals(before));
    assert.ok(restored.length > before.length);
    // Only the new bytes were uploaded; the registry copy equals the new local file.
    const { session } = await client.get({ key: p.key });
    const stored = await client.transcriptRead({ sessionId: session.id, cliSessionId: r1.sessionId });
    assert.ok(stored.data.equals(restored));

    // CLAUDE_CONFIG_DIR wins over HOME.
    const cfg = path.join(path.dirname(p.home), 'cfg');
    const env3 = { ...p.env, HOME: '/nonexistent', CLAUDE_CONFIG_DIR: cfg };
    const r3 = await runClaude([FAKE_CLAUDE, '-p', 'third'], p.opts({ env: env3 }));
    assert.equal(r3.result, 'Echo: third (turns=3)', r3.stderr);
    assert.ok(fs.existsSync(path.join(cfg, 'projects', p.cwd.replace(/[^A-Za-z0-9]/g, '-'), `${r1.sessionId}.jsonl`)));
  });

  /** A session whose head id has no transcript anywhere, with two messages of history. */
  async function unresumable(p) {
    await turn(client, p.key, { cwd: p.cwd }, (t) =>
      t.ok({ cliSessionId: 'lost-session-id', messages: [{ role: 'user', content: 'remember mango' }, { role: 'assistant', content: 'OK, I will remember mango.' }] }),
    );
  }

  test('resume failure → recap fallback', async () => {
    const p = await project('recap');
    await unresumable(p);
    const r = await runClaude([FAKE_CLAUDE, '-p', 'what fruit?'], p.opts());
    assert.equal(r.exitCode, 0, r.stderr);
    const calls = p.calls();
    assert.equal(calls.length, 2);
    assert.deepEqual(calls[0].argv.slice(0, 2), ['--resume', 'lost-session-id']);
    assert.ok(!calls[1].argv.includes('--resume'));
    const expected = `${RECAP_HEADER}\nuser: remember mango\nassistant: OK, I will remember mango.\n[End of recap]\n\nwhat fruit?`;
    assert.equal(calls[1].prompt, expected);
    assert.equal(r.result, `Echo: ${expected.slice(0, 200)} (turns=1)`);
    assert.notEqual(r.sessionId, 'lost-session-id');
    const { session } = await client.get({ key: p.key });
    assert.equal(session.cliSessionId, r.sessionId);
    assert.equal(session.lease, undefined);
    assert.equal(session.consecutiveFailures, 0);
    assert.equal(session.totalFailures, 1);
    const { chain } = await client.history({ sessionId: session.id });
    assert.deepEqual(chain.map((l) => l.reason), ['created', 'fresh_after_failure']);
    // History records the prompt as the user typed it, without the recap.
    const { messages } = await client.messagesList({ sessionId: session.id, tail: 2 });
    assert.deepEqual(messages.map((m) => m.content[0] === 'w' ? m.content : m.role), ['what fruit?', 'assistant']);
    // The new transcript was uploaded from offset 0.
    const stored = await client.transcriptRead({ sessionId: session.id, cliSessionId: r.sessionId });
    assert.ok(stored.data.equals(fs.readFileSync(transcriptPath(r.sessionId, { cwd: p.cwd, env: p.env }))));
  });

  test('resume failure with a prompt on stdin → the recap prefixes stdin', async () => {
    const p = await project('recap-stdin');
    await unresumable(p);
    const r = await runClaude([FAKE_CLAUDE, '-p'], p.opts({ input: 'piped prompt' }));
    assert.equal(r.exitCode, 0, r.stderr);
    const calls = p.calls();
    assert.equal(calls.length, 2);
    assert.ok(calls[1].prompt.startsWith(RECAP_HEADER));
    assert.ok(calls[1].prompt.endsWith('[End of recap]\n\npiped prompt'));
  });

  test('resume failure → fresh (no recap), and → fail', async () => {
    const p = await project('fresh');
    await unresumable(p);
    const r = await runClaude([FAKE_CLAUDE, '-p', 'plain'], p.opts({ onResumeFailure: 'fresh' }));
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(p.calls()[1].prompt, 'plain');
    assert.equal(r.result, 'Echo: plain (turns=1)');

    const q = await project('fail');
    await unresumable(q);
    const f = await runClaude([FAKE_CLAUDE, '-p', 'plain'], q.opts({ onResumeFailure: 'fail' }));
    assert.equal(f.exitCode, 1);
    assert.equal(f.sessionId, null);
    assert.match(f.stderr, /No conversation found with session ID: lost-session-id/);
    assert.equal(q.calls().length, 1);
    const { session } = await client.get({ key: q.key });
    assert.equal(session.cliSessionId, 'lost-session-id');
    assert.equal(session.consecutiveFailures, 1);
    assert.equal(session.lastFailureReason, 'no_conversation_found');
    assert.equal(session.lease, undefined);
  });

  test('is_error: true is a failure even with subtype success; its id is never recorded', async () => {
    const p = await project('iserr');
    const ok = await runClaude([FAKE_CLAUDE, '-p', 'first'], p.opts());
    const r = await runClaude([FAKE_CLAUDE, '-p', 'please FAIL'], p.opts());
    assert.equal(r.exitCode, 1);
    assert.equal(r.sessionId, null);
    assert.equal(r.json.is_error, true);
    assert.equal(r.json.subtype, 'success');
    assert.equal(r.result, 'API Error: the fake was asked to fail');
    const { session } = await client.get({ key: p.key });
    assert.equal(session.cliSessionId, ok.sessionId);
    assert.match(await lastErrorReason(client, session.id), /^is_error \(success\): API Error/);
    assert.equal(session.lease, undefined);
    assert.equal(session.messageCount, 2, 'a failed turn adds no history');

    // From a fresh session too: nothing recorded as the head.
    const q = await project('iserr-fresh');
    const r2 = await runClaude([FAKE_CLAUDE, '-p', 'FAIL now'], q.opts());
    assert.equal(r2.sessionId, null);
    assert.equal((await client.get({ key: q.key })).session.cliSessionId, undefined);
  });

  test('a crashing CLI: the turn completes with error and the lease is released', async () => {
    const p = await project('crash');
    const r = await runClaude([FAKE_CLAUDE, '-p', 'CRASH please'], p.opts());
    assert.equal(r.exitCode, 137);
    assert.equal(r.sessionId, null);
    const { session } = await client.get({ key: p.key });
    assert.equal(session.lease, undefined);
    assert.equal(await lastErrorReason(client, session.id), 'killed_by_SIGKILL');
    const missing = await runClaude([path.join(p.cwd, 'no-such-claude'), '-p', 'x'], p.opts());
    assert.equal(missing.exitCode, 127);
    assert.equal((await client.get({ key: p.key })).session.lease, undefined);
    assert.equal(await lastErrorReason(client, session.id), 'spawn_failed: ENOENT');
    const garbage = await runClaude([FAKE_CLAUDE, '-p', 'GARBAGE'], p.opts());
    assert.equal(garbage.exitCode, 0);
    assert.equal(garbage.sessionId, null);
    assert.equal(await lastErrorReason(client, session.id), 'no_result');
  });

  test('output formats: text (default), json object, json array (--verbose), stream-json', async () => {
    const p = await project('formats');
    const t = await runClaude([FAKE_CLAUDE, '-p', '--output-format', 'text', 'one'], p.opts());
    assert.equal(t.result, 'Echo: one (turns=1)');
    assert.deepEqual(p.calls()[0].argv, ['-p', '--output-format', 'json', 'one']);
    const j = await runClaude([FAKE_CLAUDE, '-p', '--output-format', 'json', 'two'], p.opts());
    assert.equal(j.result, 'Echo: two (turns=2)');
    assert.equal(JSON.parse(j.stdout).session_id, j.sessionId);
    const v = await runClaude([FAKE_CLAUDE, '-p', '--output-format=json', '--verbose', 'three'], p.opts());
    assert.ok(Array.isArray(JSON.parse(v.stdout)));
    assert.equal(v.result, 'Echo: three (turns=3)');
    assert.equal(v.sessionId, j.sessionId);
    const lines = [];
    const s = await runClaude([FAKE_CLAUDE, '-p', '--output-format', 'stream-json', '--verbose', 'four'], p.opts({ onLine: (l) => lines.push(l) }));
    assert.equal(s.result, 'Echo: four (turns=4)');
    assert.equal(lines.length, 3);
    assert.equal(JSON.parse(lines[0]).type, 'system');
    assert.equal(JSON.parse(lines[2]).type, 'result');
    assert.equal((await client.get({ key: p.key })).session.turnCount, 4);
  });

  test('refuses --resume, -r, --continue, -c, --session-id before touching the registry', async () => {
    const p = await project('refuse');
    for (const flag of [['--resume', 'x'], ['-r', 'x'], ['--continue'], ['-c'], ['--session-id', 'x']]) {
      await assert.rejects(runClaude([FAKE_CLAUDE, '-p', 'hi', ...flag], p.opts()), TypeError);
    }
    await assert.rejects(client.get({ key: p.key }), (err) => err.reason === 'not_found');
  });

  test('history: false records no messages', async () => {
    const p = await project('nohist');
    const r = await runClaude([FAKE_CLAUDE, '-p', 'quiet'], p.opts({ history: false }));
    assert.equal(r.exitCode, 0);
    assert.equal((await client.get({ key: p.key })).session.messageCount, 0);
  });

  test('fork: runs on a child key, resuming the parent head with --fork-session', async () => {
    const p = await project('fork');
    const r1 = await runClaude([FAKE_CLAUDE, '-p', 'base'], p.opts());
    const f = await runClaude([FAKE_CLAUDE, '-p', 'branch'], p.opts({ fork: true }));
    assert.equal(f.exitCode, 0, f.stderr);
    assert.match(f.key, new RegExp(`^${p.key}:fork:[0-9a-f]{8}$`));
    const call = p.calls()[1];
    assert.deepEqual(call.argv.slice(0, 3), ['--resume', r1.sessionId, '--fork-session']);
    assert.notEqual(f.sessionId, r1.sessionId);
    assert.equal(f.result, 'Echo: branch (turns=2)');
    const child = (await client.get({ key: f.key })).session;
    assert.equal(child.cliSessionId, f.sessionId);
    const parent = (await client.get({ key: p.key })).session;
    assert.equal(child.parentId, parent.id);
    assert.equal(parent.cliSessionId, r1.sessionId);
    const { chain } = await client.history({ sessionId: child.id });
    assert.deepEqual(chain.map((l) => l.reason), ['forked']);
    // A named fork key, restored on a new HOME from the parent's stored transcript.
    const home2 = path.join(path.dirname(p.home), 'home-fork');
    const g = await runClaude([FAKE_CLAUDE, '-p', 'named'], p.opts({ fork: true, forkKey: `${p.key}:mine`, env: { ...p.env, HOME: home2 } }));
    assert.equal(g.key, `${p.key}:mine`);
    assert.equal(g.result, 'Echo: named (turns=2)', g.stderr);
  });

  test('waits for a held lease, up to `wait` seconds', async () => {
    const p = await project('wait');
    const a = await client.acquire({ key: p.key });
    setTimeout(() => client.release({ sessionId: a.session.id, lease: a.lease }), 300);
    const r = await runClaude([FAKE_CLAUDE, '-p', 'after wait'], p.opts({ wait: 5 }));
    assert.equal(r.exitCode, 0, r.stderr);
    const b = await client.acquire({ key: p.key });
    await assert.rejects(runClaude([FAKE_CLAUDE, '-p', 'x'], p.opts({ wait: 0 })), LeaseHeld);
    await client.release({ sessionId: b.session.id, lease: b.lease });
  });

  test('the registry going away mid-turn: the CLI result is still returned, the loss is reported', async () => {
    const p = await project('gone');
    const doomed = await startServer();
    try {
      const own = await Client.connect({ addr: doomed.addr, timeoutMs: 3000 });
      const running = runClaude([FAKE_CLAUDE, '-p', 'SLEEP 1000 then answer'], p.opts({ client: own }));
      while (p.calls().length === 0) await sleep(20); // the CLI is running, under the lease
      await doomed.stop();
      const r = await running;
      assert.equal(r.exitCode, 0);
      assert.equal(r.result, 'Echo: SLEEP 1000 then answer (turns=1)');
      assert.match(r.sessionId, /^[0-9a-f-]{36}$/);
      assert.ok(p.logs.some((l) => /could not record the transcript/.test(l)), p.logs.join('\n'));
      assert.ok(p.logs.some((l) => /not recorded \(registry unreachable\): the turn \(cli session /.test(l)), p.logs.join('\n'));
      await own.close();
    } finally {
      await doomed.stop();
    }
  });

  test('owns its connection when given addr (SESSIOND_ADDR / SESSIOND_TOKEN from env)', async () => {
    const p = await project('own');
    const r = await runClaude([FAKE_CLAUDE, '-p', 'own conn'], { cwd: p.cwd, env: { ...p.env, SESSIOND_ADDR: server.addr }, key: p.key, log: () => {} });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal((await client.get({ key: p.key })).session.cliSessionId, r.sessionId);
  });
});
