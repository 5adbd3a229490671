// Every method against a real sessiond (no auth), pipelining, error classes, timeouts, Unix socket.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import {
  CallTimeout,
  Client,
  Conflict,
  InvalidParams,
  LeaseHeld,
  MethodNotFound,
  NotFound,
  SessiondError,
  StaleLease,
} from '../index.js';
import { serverSkipReason, sleep, startServer } from '../test-support/helpers.js';

const skip = serverSkipReason();
const DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$/;
let uniq = 0;
const newKey = (prefix = 'k') => `${prefix}:${process.pid}:${++uniq}`;
/** The decision with `fork` read as a boolean (PROTOCOL.md shows fresh decisions without it; Swift always sends it). */
const decisionOf = (d) => ({ ...d, fork: d.fork === true });

describe('client against sessiond', { skip }, () => {
  let server;
  let client;
  before(async () => {
    server = await startServer({ unix: true });
    client = await Client.connect({ addr: server.addr, clientName: 'node-tests', timeoutMs: 10_000 });
  });
  after(async () => {
    await client?.close();
    await server?.stop();
  });

  test('hello (sent on connect) and health', async () => {
    const info = client.serverInfo;
    assert.equal(info.protocolVersion, 1);
    assert.equal(typeof info.server.name, 'string');
    assert.equal(info.tenant, 'local');
    assert.equal(info.admin, true);
    assert.equal(info.authRequired, false);
    assert.equal(info.maxFrameBytes, 16 * 1024 * 1024);
    assert.equal(info.maxInFlight, 64);
    const again = await client.hello();
    assert.equal(again.tenant, 'local');
    const health = await client.health();
    assert.equal(health.status, 'ok');
    assert.equal(typeof health.version, 'string');
    assert.equal(typeof health.uptimeSeconds, 'number');
    assert.ok(health.connections >= 1);
    assert.ok(health.schemaVersion !== undefined);
  });

  test('acquire, lease_held, complete ok, resume decision, history', async () => {
    const key = newKey('turn');
    const a = await client.acquire({ key, tool: 'claude', cwd: '/tmp/x', holder: 'tester', metadata: { a: 1 }, labels: ['l1'] });
    assert.equal(a.created, true);
    assert.deepEqual(decisionOf(a.decision), { action: 'fresh', reason: 'new', fork: false });
    assert.equal(a.session.key, key);
    assert.equal(a.session.tool, 'claude');
    assert.equal(a.session.cwd, '/tmp/x');
    assert.equal(a.session.status, 'active');
    assert.equal(a.session.tenant, 'local');
    assert.deepEqual(a.session.metadata, { a: 1 });
    assert.deepEqual(a.session.labels, ['l1']);
    assert.match(a.session.createdAt, DATE);
    assert.equal(typeof a.lease.token, 'string');
    assert.equal(typeof a.lease.fence, 'number');
    assert.equal(a.lease.holder, 'tester');
    assert.match(a.lease.expiresAt, DATE);
    assert.equal(a.transcript, undefined);

    await assert.rejects(client.acquire({ key }), (err) => {
      assert.ok(err instanceof LeaseHeld, err.message);
      assert.equal(err.code, -32002);
      assert.equal(err.data.holder, 'tester');
      assert.match(err.data.expiresAt, DATE);
      return true;
    });

    const done = await client.complete({
      sessionId: a.session.id, lease: a.lease, outcome: 'ok', cliSessionId: 'cli-1', costUsd: 0.5, inputTokens: 10,
      outputTokens: 20, messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello', outputTokens: 20 }],
    });
    assert.equal(done.chainExtended, true);
    assert.equal(done.session.cliSessionId, 'cli-1');
    assert.equal(done.session.turnCount, 1);
    assert.equal(done.session.messageCount, 2);
    assert.equal(done.session.costUsd, 0.5);
    assert.equal(done.session.inputTokens, 10);
    assert.equal(done.session.outputTokens, 20);
    assert.equal(done.session.lease, undefined);
    assert.equal(done.lease, undefined);

    const b = await client.acquire({ key });
    assert.equal(b.created, false);
    assert.deepEqual(decisionOf(b.decision), { action: 'resume', cliSessionId: 'cli-1', fork: false });
    assert.ok(b.lease.fence > a.lease.fence);
    await assert.rejects(
      client.complete({ sessionId: a.session.id, lease: a.lease, outcome: 'ok', cliSessionId: 'x' }),
      StaleLease,
    );
    const c2 = await client.complete({ sessionId: b.session.id, lease: b.lease, outcome: 'ok', cliSessionId: 'cli-2' });
    assert.equal(c2.chainExtended, true);
    assert.equal(c2.session.resumeAttempts, 1);
    const { chain } = await client.history({ sessionId: a.session.id });
    assert.deepEqual(chain.map((l) => [l.seq, l.cliSessionId, l.reason]), [[1, 'cli-1', 'created'], [2, 'cli-2', 'changed_by_cli']]);
    assert.match(chain[0].at, DATE);
  });

  test('acquire waits for a held lease (waitMs)', async () => {
    const key = newKey('wait');
    const a = await client.acquire({ key });
    const waiting = client.acquire({ key, waitMs: 5000 });
    await sleep(150);
    assert.deepEqual(await client.release({ sessionId: a.session.id, lease: a.lease }), { released: true });
    const b = await waiting;
    assert.ok(b.lease.fence > a.lease.fence);
    await client.release({ sessionId: b.session.id, lease: b.lease });
  });

  test('renew, release, stale leases', async () => {
    const key = newKey('renew');
    const a = await client.acquire({ key, leaseSeconds: 30 });
    const r = await client.renew({ sessionId: a.session.id, lease: a.lease, leaseSeconds: 120 });
    assert.equal(r.lease.token, a.lease.token);
    assert.ok(Date.parse(r.lease.expiresAt) > Date.parse(a.lease.expiresAt));
    await assert.rejects(client.renew({ sessionId: a.session.id, lease: { token: 'nope', fence: a.lease.fence } }), StaleLease);
    await assert.rejects(client.renew({ sessionId: a.session.id, lease: { token: a.lease.token, fence: a.lease.fence + 1 } }), StaleLease);
    assert.deepEqual(await client.release({ sessionId: a.session.id, lease: r.lease }), { released: true });
    await assert.rejects(client.renew({ sessionId: a.session.id, lease: a.lease }), StaleLease);
  });

  test('complete resume_failed with keepLease, and error', async () => {
    const key = newKey('rf');
    const a = await client.acquire({ key });
    await client.complete({ sessionId: a.session.id, lease: a.lease, outcome: 'ok', cliSessionId: 'old' });
    const b = await client.acquire({ key });
    const kept = await client.complete({
      sessionId: b.session.id, lease: b.lease, outcome: 'resume_failed', reason: 'no_conversation_found', keepLease: true,
    });
    assert.equal(typeof kept.lease.token, 'string');
    assert.deepEqual(decisionOf(kept.decision), { action: 'fresh', reason: 'resume_failed', fork: false });
    assert.equal(kept.session.consecutiveFailures, 1);
    assert.equal(kept.session.lastFailureReason, 'no_conversation_found');
    const fresh = await client.complete({ sessionId: b.session.id, lease: kept.lease, outcome: 'ok', cliSessionId: 'new' });
    assert.equal(fresh.session.cliSessionId, 'new');
    assert.equal(fresh.session.consecutiveFailures, 0);
    const { chain } = await client.history({ sessionId: a.session.id });
    assert.deepEqual(chain.map((l) => l.reason), ['created', 'fresh_after_failure']);
    const c = await client.acquire({ key });
    const err = await client.complete({ sessionId: c.session.id, lease: c.lease, outcome: 'error', reason: 'boom' });
    assert.equal(err.chainExtended, false);
    assert.equal(err.session.cliSessionId, 'new');
  });

  test('touch, get, update, list, delete', async () => {
    const prefix = newKey('list');
    const ids = [];
    for (let i = 0; i < 5; i++) {
      const a = await client.acquire({ key: `${prefix}:${i}`, labels: i % 2 ? ['odd'] : ['even'], tool: i === 4 ? 'other' : 'claude' });
      await client.release({ sessionId: a.session.id, lease: a.lease });
      ids.push(a.session.id);
    }
    const byKey = await client.get({ key: `${prefix}:0` });
    assert.equal(byKey.session.id, ids[0]);
    const byId = await client.get({ sessionId: ids[1] });
    assert.equal(byId.session.key, `${prefix}:1`);
    const touched = await client.touch({ key: `${prefix}:0`, ttlSeconds: 7200 });
    assert.equal(touched.session.ttlSeconds, 7200);
    const touched2 = await client.touch({ sessionId: ids[0] });
    assert.equal(touched2.session.id, ids[0]);

    const updated = await client.update({ sessionId: ids[0], metadata: { owner: 'me' }, labels: ['x', 'y'], ttlSeconds: 60 });
    assert.deepEqual(updated.session.metadata, { owner: 'me' });
    assert.deepEqual(updated.session.labels, ['x', 'y']);
    assert.equal(updated.session.ttlSeconds, 60);

    const all = await client.list({ keyPrefix: prefix });
    assert.equal(all.sessions.length, 5);
    assert.equal(all.nextCursor, undefined);
    const seen = [];
    let cursor;
    do {
      const page = await client.list({ keyPrefix: prefix, limit: 2, cursor });
      assert.ok(page.sessions.length <= 2);
      seen.push(...page.sessions.map((s) => s.id));
      cursor = page.nextCursor;
    } while (cursor);
    assert.deepEqual([...seen].sort(), [...ids].sort());
    assert.equal((await client.list({ keyPrefix: prefix, label: 'odd' })).sessions.length, 2);
    assert.equal((await client.list({ keyPrefix: prefix, tool: 'other' })).sessions.length, 1);

    const closed = await client.update({ sessionId: ids[2], status: 'closed' });
    assert.equal(closed.session.status, 'closed');
    assert.deepEqual((await client.list({ keyPrefix: prefix, status: 'closed' })).sessions.map((s) => s.id), [ids[2]]);

    assert.deepEqual(await client.delete({ sessionId: ids[3] }), { deleted: true });
    await assert.rejects(client.get({ sessionId: ids[3] }), NotFound);
    await assert.rejects(client.get({ key: `${prefix}:none` }), NotFound);
  });

  test('a closed session starts fresh with reason stale', async () => {
    const key = newKey('closed');
    const a = await client.acquire({ key });
    await client.complete({ sessionId: a.session.id, lease: a.lease, outcome: 'ok', cliSessionId: 'c1' });
    await client.update({ sessionId: a.session.id, status: 'closed' });
    const b = await client.acquire({ key });
    assert.deepEqual(decisionOf(b.decision), { action: 'fresh', reason: 'stale', fork: false });
    await client.release({ sessionId: b.session.id, lease: b.lease });
  });

  test('delete refuses a held lease unless forced', async () => {
    const a = await client.acquire({ key: newKey('del') });
    await assert.rejects(client.delete({ sessionId: a.session.id }), (err) => err instanceof LeaseHeld || err instanceof Conflict);
    assert.deepEqual(await client.delete({ sessionId: a.session.id, force: true }), { deleted: true });
  });

  test('fork: the child resumes the parent head with fork=true', async () => {
    const key = newKey('parent');
    const a = await client.acquire({ key });
    await client.complete({ sessionId: a.session.id, lease: a.lease, outcome: 'ok', cliSessionId: 'p-head' });
    const childKey = `${key}:fork:abcdef01`;
    const forked = await client.fork({ sessionId: a.session.id, key: childKey });
    assert.equal(forked.session.key, childKey);
    assert.equal(forked.session.parentId, a.session.id);
    const c = await client.acquire({ key: childKey });
    assert.equal(c.created, false);
    assert.deepEqual(decisionOf(c.decision), { action: 'resume', cliSessionId: 'p-head', fork: true });
    const done = await client.complete({ sessionId: c.session.id, lease: c.lease, outcome: 'ok', cliSessionId: 'child-1' });
    assert.equal(done.session.cliSessionId, 'child-1');
    const { chain } = await client.history({ sessionId: c.session.id });
    assert.deepEqual(chain.map((l) => [l.cliSessionId, l.reason]), [['child-1', 'forked']]);
    await assert.rejects(client.fork({ sessionId: a.session.id, key: childKey }), Conflict);
  });

  test('messages.append and messages.list', async () => {
    const a = await client.acquire({ key: newKey('msg') });
    const sid = a.session.id;
    const r1 = await client.messagesAppend({ sessionId: sid, messages: [{ role: 'user', content: 'one' }, { role: 'assistant', content: 'two', inputTokens: 3, outputTokens: 4 }] });
    assert.deepEqual(r1, { firstSeq: 1, lastSeq: 2 });
    const r2 = await client.messagesAppend({ sessionId: sid, lease: a.lease, messages: [{ role: 'system', content: 'three' }, { role: 'tool', content: 'four' }, { role: 'user', content: 'five' }] });
    assert.deepEqual(r2, { firstSeq: 3, lastSeq: 5 });
    await assert.rejects(client.messagesAppend({ sessionId: sid, lease: { token: 'bad', fence: 1 }, messages: [{ role: 'user', content: 'x' }] }), StaleLease);
    const all = await client.messagesList({ sessionId: sid });
    assert.deepEqual(all.messages.map((m) => [m.seq, m.role, m.content]), [[1, 'user', 'one'], [2, 'assistant', 'two'], [3, 'system', 'three'], [4, 'tool', 'four'], [5, 'user', 'five']]);
    assert.equal(all.messages[1].inputTokens, 3);
    assert.equal(all.messages[1].outputTokens, 4);
    assert.equal(all.messages[0].inputTokens, undefined);
    assert.match(all.messages[0].at, DATE);
    assert.equal(all.nextAfterSeq, undefined);
    const page = await client.messagesList({ sessionId: sid, afterSeq: 1, limit: 2 });
    assert.deepEqual(page.messages.map((m) => m.seq), [2, 3]);
    assert.equal(page.nextAfterSeq, 3);
    const tail = await client.messagesList({ sessionId: sid, tail: 2 });
    assert.deepEqual(tail.messages.map((m) => m.seq), [4, 5]);
    await assert.rejects(client.messagesAppend({ sessionId: sid, messages: [{ role: 'robot', content: 'x' }] }), InvalidParams);
    await client.release({ sessionId: sid, lease: a.lease });
  });

  test('transcript.append and transcript.read (binary, offsets, conflict)', async () => {
    const a = await client.acquire({ key: newKey('tr') });
    const sid = a.session.id;
    const bytes = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80, ...Buffer.from('{"type":"user"}\n')]);
    const r1 = await client.transcriptAppend({ sessionId: sid, lease: a.lease, cliSessionId: 'cli-t', offset: 0, data: bytes });
    assert.deepEqual(r1, { size: bytes.length, appended: bytes.length });
    // A retried upload overlapping the stored bytes only appends the new part.
    const more = Buffer.from('more\n');
    const r2 = await client.transcriptAppend({ sessionId: sid, lease: a.lease, cliSessionId: 'cli-t', offset: 3, data: Buffer.concat([bytes.subarray(3), more]) });
    assert.deepEqual(r2, { size: bytes.length + more.length, appended: more.length });
    const r3 = await client.transcriptAppend({ sessionId: sid, lease: a.lease, cliSessionId: 'cli-t', offset: 0, data: bytes });
    assert.equal(r3.appended, 0);
    await assert.rejects(
      client.transcriptAppend({ sessionId: sid, lease: a.lease, cliSessionId: 'cli-t', offset: 1000, data: more }),
      (err) => err instanceof Conflict && err.data.size === bytes.length + more.length,
    );
    await assert.rejects(
      client.transcriptAppend({ sessionId: sid, lease: { token: 'x', fence: a.lease.fence }, cliSessionId: 'cli-t', offset: 0, data: more }),
      StaleLease,
    );
    const all = Buffer.concat([bytes, more]);
    const read = await client.transcriptRead({ sessionId: sid, cliSessionId: 'cli-t' });
    assert.ok(Buffer.isBuffer(read.data));
    assert.deepEqual(read.data, all);
    assert.equal(read.size, all.length);
    assert.equal(read.eof, true);
    assert.equal(read.offset, 0);
    assert.equal(read.cliSessionId, 'cli-t');
    const part = await client.transcriptRead({ sessionId: sid, cliSessionId: 'cli-t', offset: 2, limit: 4 });
    assert.deepEqual(part.data, all.subarray(2, 6));
    assert.equal(part.eof, false);
    assert.equal(part.offset, 2);
    await assert.rejects(client.transcriptRead({ sessionId: sid, cliSessionId: 'nope' }), NotFound);

    // The head's transcript: acquire reports its stored size; read defaults to the head.
    await client.complete({ sessionId: sid, lease: a.lease, outcome: 'ok', cliSessionId: 'cli-t' });
    const b = await client.acquire({ key: a.session.key });
    assert.deepEqual(b.transcript, { cliSessionId: 'cli-t', size: all.length });
    assert.equal(b.session.transcriptBytes, all.length);
    const head = await client.transcriptRead({ sessionId: sid });
    assert.equal(head.cliSessionId, 'cli-t');
    assert.deepEqual(head.data, all);
    await client.release({ sessionId: sid, lease: b.lease });
  });

  test('a large transcript chunk round-trips (base64 on the wire)', async () => {
    const a = await client.acquire({ key: newKey('big') });
    const data = Buffer.alloc(3 * 1024 * 1024, 'abcdefghij');
    const r = await client.transcriptAppend({ sessionId: a.session.id, lease: a.lease, cliSessionId: 'big', offset: 0, data });
    assert.equal(r.size, data.length);
    const back = await client.transcriptRead({ sessionId: a.session.id, cliSessionId: 'big' });
    assert.equal(back.data.length, data.length);
    assert.ok(back.data.equals(data));
    await client.release({ sessionId: a.session.id, lease: a.lease });
  });

  test('audit.list and stats', async () => {
    const key = newKey('audit');
    const a = await client.acquire({ key });
    await client.complete({ sessionId: a.session.id, lease: a.lease, outcome: 'ok', cliSessionId: 'au' });
    const { entries } = await client.auditList({ sessionId: a.session.id });
    const actions = entries.map((e) => e.action);
    for (const action of ['session.create', 'lease.grant', 'turn.complete']) assert.ok(actions.includes(action), `${action} in ${actions}`);
    const e = entries[0];
    assert.equal(typeof e.id, 'number');
    assert.match(e.at, DATE);
    assert.equal(e.tenant, 'local');
    assert.equal(typeof e.actor, 'string');
    assert.equal(typeof e.outcome, 'string');
    assert.equal(typeof e.detail, 'object');
    // Newest first.
    for (let i = 1; i < entries.length; i++) assert.ok(entries[i - 1].id > entries[i].id);
    const grants = await client.auditList({ sessionId: a.session.id, action: 'lease.grant' });
    assert.ok(grants.entries.length >= 1 && grants.entries.every((x) => x.action === 'lease.grant'));
    const since = await client.auditList({ since: new Date(Date.now() + 3600_000) });
    assert.equal(since.entries.length, 0);
    const paged = await client.auditList({ limit: 1 });
    assert.equal(paged.entries.length, 1);
    assert.equal(typeof paged.nextCursor, 'string');
    const next = await client.auditList({ limit: 1, cursor: paged.nextCursor });
    assert.ok(next.entries[0].id < paged.entries[0].id);

    const stats = await client.stats();
    for (const field of ['sessions', 'turns', 'resumeAttempts', 'resumeSuccesses', 'resumeFailures', 'freshStarts', 'databaseBytes', 'walBytes']) {
      assert.equal(typeof stats[field], 'number', field);
    }
    assert.equal(typeof stats.byStatus, 'object');
    assert.ok(Array.isArray(stats.topFailureReasons));
    assert.ok(Array.isArray(stats.sessionAge));
    assert.ok(stats.sessions >= 1);
  });

  test('error classes: MethodNotFound, InvalidParams, NotFound', async () => {
    await assert.rejects(client.call('no.such.method', {}), (err) => err instanceof MethodNotFound && err.code === -32601 && err.reason === 'method_not_found');
    await assert.rejects(client.call('session.acquire', {}), (err) => {
      assert.ok(err instanceof InvalidParams, `${err.name}: ${err.message}`);
      assert.equal(err.code, -32602);
      assert.match(err.message, /key/);
      return true;
    });
    await assert.rejects(client.call('session.acquire', { key: 42 }), InvalidParams);
    await assert.rejects(client.list({ limit: 100000 }), InvalidParams);
    await assert.rejects(client.history({ sessionId: 'does-not-exist' }), NotFound);
    await assert.rejects(client.messagesList({ sessionId: 'does-not-exist' }), NotFound);
    await assert.rejects(client.get({ sessionId: 'does-not-exist' }), (err) => err instanceof NotFound && err instanceof SessiondError && err.code === -32001);
    assert.equal(client.isOpen, true);
  });

  test('pipelining: 200 concurrent calls on one connection', async () => {
    const prefix = newKey('pipe');
    const before = client.pendingCount;
    const calls = Array.from({ length: 200 }, (_, i) => {
      if (i % 4 === 0) return client.health().then((r) => ['health', r.status]);
      return client.acquire({ key: `${prefix}:${i}` }).then((r) => ['acquire', r.session.key, r, i]);
    });
    assert.ok(client.pendingCount >= 200 - before);
    const results = await Promise.all(calls);
    for (const [i, r] of results.entries()) {
      if (i % 4 === 0) assert.deepEqual(r, ['health', 'ok']);
      else assert.equal(r[1], `${prefix}:${i}`);
    }
    await Promise.all(results.filter((r) => r[0] === 'acquire').map((r) => client.release({ sessionId: r[2].session.id, lease: r[2].lease })));
    assert.equal(client.pendingCount, 0);
  });

  test('responses come out of order: a waiting acquire does not hold up others', async () => {
    const key = newKey('ooo');
    const a = await client.acquire({ key });
    const order = [];
    const waiting = client.acquire({ key, waitMs: 3000 }).then((r) => {
      order.push('acquire');
      return r;
    });
    await client.health().then(() => order.push('health'));
    await client.release({ sessionId: a.session.id, lease: a.lease });
    const b = await waiting;
    assert.deepEqual(order, ['health', 'acquire']);
    await client.release({ sessionId: b.session.id, lease: b.lease });
  });

  test('timeouts: a call times out, the connection stays usable', async () => {
    const key = newKey('to');
    const a = await client.acquire({ key });
    const started = Date.now();
    await assert.rejects(client.acquire({ key, waitMs: 1500 }, { timeoutMs: 200 }), CallTimeout);
    assert.ok(Date.now() - started < 1000);
    assert.equal((await client.health()).status, 'ok');
    await client.release({ sessionId: a.session.id, lease: a.lease });
    await sleep(100); // the abandoned acquire may now be granted; its late answer must be ignored
    assert.equal(client.isOpen, true);
    assert.equal((await client.health()).status, 'ok');
  });

  test('Unix socket', async () => {
    for (const addr of [`unix:${server.unixPath}`, server.unixPath, `unix://${server.unixPath}`]) {
      const c = await Client.connect({ addr });
      assert.equal(c.serverInfo.tenant, 'local');
      assert.equal((await c.health()).status, 'ok');
      const key = newKey('unix');
      const a = await c.acquire({ key });
      assert.equal((await client.get({ key })).session.id, a.session.id);
      await c.release({ sessionId: a.session.id, lease: a.lease });
      await c.close();
    }
  });

  test('SESSIOND_ADDR default, hello: false, tcp:// form', async () => {
    const c = new Client({ env: { SESSIOND_ADDR: `tcp://${server.addr}` }, hello: false });
    assert.equal((await c.health()).status, 'ok'); // lazily connects
    assert.equal(c.serverInfo, null);
    await c.close();
  });
});
