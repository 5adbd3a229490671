// Against a fake server: bad input from the server side (broken frames, bad JSON, unknown ids, closes) must fail
// clearly and never hang; plus ordering, timeouts and the handshake.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { CallTimeout, Client, ConnectionClosed, LeaseHeld, ProtocolError, TooLarge } from '../index.js';
import { fakeServer, frame, onRequests } from '../test-support/helpers.js';

const servers = [];
after(async () => {
  for (const s of servers) await s.close();
});

/** A fake sessiond whose `behave(socket, request)` decides what to answer to each request. */
async function fake(behave) {
  const s = await fakeServer((socket) => onRequests(socket, (req) => behave(socket, req)));
  servers.push(s);
  return s;
}

const ok = (req, result = {}) => frame({ jsonrpc: '2.0', id: req.id, result });
const helloResult = { server: { name: 'fake', version: '0' }, protocolVersion: 1, tenant: 'local', admin: true,
  authRequired: false, maxFrameBytes: 16777216, maxInFlight: 64 };

/** Answers hello normally, and `health` with `onHealth`. */
function withHello(onHealth) {
  return (socket, req) => {
    if (req.method === 'hello') socket.write(ok(req, helloResult));
    else onHealth(socket, req);
  };
}

const T = { timeoutMs: 2000 };

describe('bad server input', () => {
  test('a truncated frame rejects pending calls with ProtocolError', async () => {
    const s = await fake(withHello((socket) => {
      socket.write(frame('{"jsonrpc":"2.0","id":2,"result":{"status":"ok"}}').subarray(0, 20));
      socket.end();
    }));
    const c = await Client.connect({ addr: s.addr, ...T });
    const started = Date.now();
    await assert.rejects(c.health(), (err) => err instanceof ProtocolError && /truncated/.test(err.message));
    assert.ok(Date.now() - started < 1500);
    await assert.rejects(c.health(), ConnectionClosed);
    await c.close();
  });

  test('a length over the client cap is refused at the header', async () => {
    const s = await fake(withHello((socket) => {
      const head = Buffer.alloc(4);
      head.writeUInt32BE(0x7fffffff);
      socket.write(head); // and never the payload
    }));
    const c = await Client.connect({ addr: s.addr, maxFrameBytes: 1024, ...T });
    const started = Date.now();
    await assert.rejects(c.health(), (err) => err instanceof ProtocolError && /over the client's maximum/.test(err.message));
    assert.ok(Date.now() - started < 1500);
    await c.close();
  });

  test('the default cap is 16 MiB', async () => {
    const s = await fake(withHello((socket) => {
      const head = Buffer.alloc(4);
      head.writeUInt32BE(16 * 1024 * 1024 + 1);
      socket.write(head);
    }));
    const c = await Client.connect({ addr: s.addr, ...T });
    await assert.rejects(c.health(), ProtocolError);
    await c.close();
  });

  test('a zero-length frame', async () => {
    const s = await fake(withHello((socket) => socket.write(Buffer.alloc(4))));
    const c = await Client.connect({ addr: s.addr, ...T });
    await assert.rejects(c.health(), (err) => err instanceof ProtocolError && /zero-length/.test(err.message));
    await c.close();
  });

  test('invalid JSON', async () => {
    const s = await fake(withHello((socket) => socket.write(frame('{"jsonrpc": "2.0", "id": 2, "result": '))));
    const c = await Client.connect({ addr: s.addr, ...T });
    await assert.rejects(c.health(), (err) => err instanceof ProtocolError && /invalid JSON/.test(err.message));
    await c.close();
  });

  test('invalid JSON during hello makes connect fail', async () => {
    const s = await fake((socket) => socket.write(frame('nope')));
    await assert.rejects(Client.connect({ addr: s.addr, ...T }), ProtocolError);
  });

  test('a response for an unknown id', async () => {
    const s = await fake(withHello((socket) => socket.write(frame({ jsonrpc: '2.0', id: 9999, result: {} }))));
    const c = await Client.connect({ addr: s.addr, ...T });
    await assert.rejects(c.health(), (err) => err instanceof ProtocolError && /unknown id 9999/.test(err.message));
    await c.close();
  });

  test('the server closing the connection mid-call', async () => {
    const s = await fake(withHello((socket) => socket.destroy()));
    const c = await Client.connect({ addr: s.addr, ...T });
    const calls = [c.health(), c.health(), c.call('stats')];
    for (const p of calls) await assert.rejects(p, ConnectionClosed);
    assert.equal(c.isOpen, false);
    await c.close();
  });

  test('an id-null error (what the server sends before closing) rejects pending calls with its reason', async () => {
    const s = await fake(withHello((socket) => {
      socket.write(frame({ jsonrpc: '2.0', id: null, error: { code: -32006, message: 'frame too large', data: { reason: 'too_large' } } }));
      socket.end();
    }));
    const c = await Client.connect({ addr: s.addr, ...T });
    await assert.rejects(c.health(), TooLarge);
    await c.close();
  });

  test('no answer: CallTimeout within the call timeout, and the connection stays usable', async () => {
    let n = 0;
    const s = await fake(withHello((socket, req) => {
      n += 1;
      if (n === 1) setTimeout(() => socket.write(ok(req, { late: true })), 400); // answers after the timeout
      else socket.write(ok(req, { n }));
    }));
    const c = await Client.connect({ addr: s.addr, ...T });
    const started = Date.now();
    await assert.rejects(c.health({ timeoutMs: 150 }), (err) => err instanceof CallTimeout && err.reason === 'timeout');
    const took = Date.now() - started;
    assert.ok(took >= 140 && took < 1000, `${took}`);
    await new Promise((r) => setTimeout(r, 400)); // the late answer arrives and is ignored
    assert.deepEqual(await c.health(), { n: 2 });
    await c.close();
  });

  test('the default timeout applies to every call', async () => {
    const s = await fake(withHello(() => {}));
    const c = await Client.connect({ addr: s.addr, timeoutMs: 200 });
    await assert.rejects(c.call('anything'), CallTimeout);
    await c.close();
  });

  test('connect to a server that never answers hello times out', async () => {
    const s = await fake(() => {});
    await assert.rejects(Client.connect({ addr: s.addr, timeoutMs: 200 }), CallTimeout);
  });

  test('connection refused is a ConnectionClosed error', async () => {
    const s = await fakeServer(() => {});
    const addr = s.addr;
    await s.close();
    await assert.rejects(Client.connect({ addr, timeoutMs: 1000 }), (err) => err instanceof ConnectionClosed && /cannot connect/.test(err.message));
  });

  test('responses out of order are matched by id; notifications are ignored', async () => {
    const held = [];
    const notes = [];
    const s = await fake(withHello((socket, req) => {
      held.push(req);
      if (held.length === 3) {
        socket.write(frame({ jsonrpc: '2.0', method: 'server.event', params: { x: 1 } }));
        for (const r of held.reverse()) socket.write(ok(r, { echo: r.params.n }));
      }
    }));
    const c = await Client.connect({ addr: s.addr, onNotification: (m, p) => notes.push([m, p]), ...T });
    const results = await Promise.all([1, 2, 3].map((n) => c.call('echo', { n })));
    assert.deepEqual(results, [{ echo: 1 }, { echo: 2 }, { echo: 3 }]);
    assert.deepEqual(notes, [['server.event', { x: 1 }]]);
    await c.close();
  });

  test('an error response maps to its class', async () => {
    const s = await fake(withHello((socket, req) => socket.write(frame({ jsonrpc: '2.0', id: req.id,
      error: { code: -32002, message: 'held by x', data: { reason: 'lease_held', holder: 'x', expiresAt: '2030-01-01T00:00:00.000Z' } } }))));
    const c = await Client.connect({ addr: s.addr, ...T });
    await assert.rejects(c.acquire({ key: 'k' }), (err) => err instanceof LeaseHeld && err.data.holder === 'x' && err.code === -32002);
    assert.equal(c.isOpen, true);
    await c.close();
  });

  test('hello carries the client name, version, protocol version and token', async () => {
    let hello;
    const s = await fake((socket, req) => {
      hello = req;
      socket.write(ok(req, helloResult));
    });
    const c = await Client.connect({ addr: s.addr, clientName: 'my-tool', token: 'sekret', ...T });
    assert.deepEqual(hello.params, { client: { name: 'my-tool', version: '0.1.0' }, protocolVersion: 1, token: 'sekret' });
    assert.equal(hello.jsonrpc, '2.0');
    assert.equal(typeof hello.id, 'number');
    assert.deepEqual(c.serverInfo, helloResult);
    await c.close();
  });

  test('a request over the server frame limit is refused locally, the connection stays open', async () => {
    const s = await fake((socket, req) => {
      if (req.method === 'hello') socket.write(ok(req, { ...helloResult, maxFrameBytes: 1000 }));
      else socket.write(ok(req, {}));
    });
    const c = await Client.connect({ addr: s.addr, ...T });
    await assert.rejects(c.call('x', { big: 'y'.repeat(2000) }), TooLarge);
    assert.deepEqual(await c.call('x', {}), {});
    await c.close();
  });

  test('close() rejects pending calls and is idempotent; await using works', async () => {
    const s = await fake(withHello(() => {}));
    const c = await Client.connect({ addr: s.addr, ...T });
    const p = c.health();
    await c.close();
    await assert.rejects(p, ConnectionClosed);
    await c.close();
    await assert.rejects(c.health(), ConnectionClosed);
    const d = await Client.connect({ addr: s.addr, ...T });
    await d[Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose')]();
    assert.equal(d.isOpen, false);
  });

  test('abort signal cancels one call', async () => {
    const s = await fake(withHello(() => {}));
    const c = await Client.connect({ addr: s.addr, ...T });
    const ac = new AbortController();
    const p = c.health({ signal: ac.signal });
    ac.abort(new Error('stop'));
    await assert.rejects(p, /stop/);
    assert.equal(c.isOpen, true);
    await c.close();
  });

  test('calls made while connecting wait for the hello to be answered', async () => {
    const seen = [];
    const s = await fake((socket, req) => {
      seen.push(`${req.method}@${Date.now()}`);
      if (req.method === 'hello') setTimeout(() => socket.write(ok(req, helloResult)), 150);
      else socket.write(ok(req, { method: req.method }));
    });
    const c = new Client({ addr: s.addr, ...T });
    const opening = c.open();
    const early = c.health();
    const helloAnswered = Date.now() + 150;
    assert.deepEqual(await early, { method: 'health' });
    await opening;
    assert.deepEqual(seen.map((x) => x.split('@')[0]), ['hello', 'health']);
    assert.ok(Number(seen[1].split('@')[1]) >= helloAnswered - 20);
    await c.close();
  });
});
