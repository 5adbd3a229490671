// turn(): acquire → body → complete; the lease is renewed while the body runs and always released.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Client, turn } from '../index.js';
import { serverSkipReason, sleep, startServer } from '../test-support/helpers.js';

const skip = serverSkipReason();
let uniq = 0;

/** The reason of the newest turn that completed with `error` (recorded in the audit log). */
async function lastErrorReason(client, sessionId) {
  const { entries } = await client.auditList({ sessionId, action: 'turn.complete' });
  return entries.find((e) => e.outcome === 'failed')?.detail?.reason;
}
const newKey = (p) => `${p}:${process.pid}:${++uniq}`;

describe('turn()', { skip }, () => {
  let server;
  let client;
  before(async () => {
    server = await startServer();
    client = await Client.connect({ addr: server.addr, timeoutMs: 10_000 });
  });
  after(async () => {
    await client?.close();
    await server?.stop();
  });

  test('two turns: fresh, then resume; t.ok records the outcome', async () => {
    const key = newKey('turn');
    const first = await turn(client, key, { cwd: '/tmp/p' }, async (t) => {
      assert.equal(t.resume, false);
      assert.equal(t.cliSessionId, null);
      assert.equal(t.fork, false);
      assert.equal(t.decision.action, 'fresh');
      assert.equal(t.created, true);
      assert.equal(typeof t.lease.token, 'string');
      assert.equal(t.session.key, key);
      t.ok({ cliSessionId: 'c-1', costUsd: 0.25, inputTokens: 5, outputTokens: 6, messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] });
      return 'value-1';
    });
    assert.equal(first.value, 'value-1');
    assert.equal(first.outcome, 'ok');
    assert.equal(first.completion.session.cliSessionId, 'c-1');
    assert.equal(first.completion.session.messageCount, 2);
    const second = await turn(client, key, {}, async (t) => {
      assert.equal(t.resume, true);
      assert.equal(t.cliSessionId, 'c-1');
      t.ok({ cliSessionId: 'c-1' });
    });
    assert.equal(second.completion.session.turnCount, 2);
    assert.equal(second.completion.session.resumeSuccesses, 1);
    assert.equal(second.completion.chainExtended, false);
  });

  test('a body that throws completes with error and releases the lease', async () => {
    const key = newKey('throw');
    const boom = new Error('kaboom');
    await assert.rejects(turn(client, key, {}, async () => {
      throw boom;
    }), (err) => err === boom);
    // The lease is free again: an acquire without waiting succeeds.
    const a = await client.acquire({ key });
    assert.equal(a.session.lease?.holder, a.lease.holder);
    assert.equal(await lastErrorReason(client, a.session.id), 'exception: Error: kaboom');
    assert.equal(a.session.cliSessionId, undefined);
    await client.release({ sessionId: a.session.id, lease: a.lease });
  });

  test('resumeFailed and error outcomes; no outcome completes with error', async () => {
    const key = newKey('fail');
    await turn(client, key, {}, (t) => t.ok({ cliSessionId: 'x-1' }));
    const rf = await turn(client, key, {}, (t) => t.resumeFailed('no_conversation_found'));
    assert.equal(rf.completion.session.consecutiveFailures, 1);
    assert.equal(rf.completion.session.lastFailureReason, 'no_conversation_found');
    const er = await turn(client, key, {}, (t) => t.error('cli crashed'));
    assert.equal(er.outcome, 'error');
    assert.equal(er.completion.session.cliSessionId, 'x-1');
    assert.equal(await lastErrorReason(client, er.completion.session.id), 'cli crashed');
    const none = await turn(client, key, {}, () => {});
    assert.equal(none.outcome, 'error');
    assert.equal(await lastErrorReason(client, none.completion.session.id), 'no_outcome');
  });

  test('turn waits for a held lease', async () => {
    const key = newKey('wait');
    const a = await client.acquire({ key });
    setTimeout(() => client.release({ sessionId: a.session.id, lease: a.lease }), 200);
    const r = await turn(client, key, { waitMs: 5000 }, (t) => t.ok({ cliSessionId: 'w' }));
    assert.equal(r.outcome, 'ok');
  });

  test('the lease is renewed in the background while the body runs', async () => {
    const key = newKey('renew');
    let renewErrors = 0;
    const r = await turn(client, key, { leaseSeconds: 2, onRenewError: () => renewErrors++ }, async (t) => {
      const first = Date.parse(t.lease.expiresAt);
      await sleep(2600); // longer than the lease: without renewals, complete would be refused as stale
      assert.ok(Date.parse(t.lease.expiresAt) > first, 'the lease was renewed');
      assert.equal(t.signal.aborted, false);
      t.ok({ cliSessionId: 'long' });
    });
    assert.equal(renewErrors, 0);
    assert.equal(r.completion.session.cliSessionId, 'long');
  });
});
