// Pure parts: addresses, frames, error mapping, argument handling, recap, output parsing.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  CallTimeout,
  ConnectionClosed,
  FrameDecoder,
  InvalidParams,
  LeaseHeld,
  NotFound,
  ProtocolError,
  RECAP_HEADER,
  SessiondError,
  StaleLease,
  buildRecap,
  checkArgs,
  encodeFrame,
  errorFromResponse,
  extractPrompt,
  findOutputFormat,
  parseAddress,
  parseCliOutput,
  transcriptPath,
} from '../index.js';
import * as api from '../index.js';

describe('parseAddress', () => {
  test('accepts every documented form', () => {
    assert.deepEqual(parseAddress('127.0.0.1:7420'), { kind: 'tcp', host: '127.0.0.1', port: 7420 });
    assert.deepEqual(parseAddress('tcp://localhost:1'), { kind: 'tcp', host: 'localhost', port: 1 });
    assert.deepEqual(parseAddress('[::1]:7420'), { kind: 'tcp', host: '::1', port: 7420 });
    assert.deepEqual(parseAddress('tcp://[::1]:80'), { kind: 'tcp', host: '::1', port: 80 });
    assert.deepEqual(parseAddress('unix:/tmp/s.sock'), { kind: 'unix', path: '/tmp/s.sock' });
    assert.deepEqual(parseAddress('unix:///tmp/s.sock'), { kind: 'unix', path: '/tmp/s.sock' });
    assert.deepEqual(parseAddress('/run/sessiond.sock'), { kind: 'unix', path: '/run/sessiond.sock' });
  });
  test('refuses bad addresses clearly', () => {
    for (const bad of ['', 'localhost', 'host:', 'host:0', 'host:65536', 'host:x', ':7420', 'unix:rel', '::1:80', 'tcp://']) {
      assert.throws(() => parseAddress(bad), TypeError, bad);
    }
  });
  test('Client takes SESSIOND_ADDR and SESSIOND_TOKEN from the environment, else 127.0.0.1:7420', () => {
    const c = new api.Client({ env: { SESSIOND_ADDR: 'unix:/x.sock', SESSIOND_TOKEN: 'tok' } });
    assert.deepEqual(c.address, { kind: 'unix', path: '/x.sock' });
    assert.equal(c.token, 'tok');
    const d = new api.Client({ env: {} });
    assert.deepEqual(d.address, { kind: 'tcp', host: '127.0.0.1', port: 7420 });
    assert.equal(d.token, undefined);
    assert.equal(new api.Client({ env: { SESSIOND_TOKEN: 'x' }, token: 'y' }).token, 'y');
  });
});

describe('frames', () => {
  test('encode: 4-byte big-endian length, then UTF-8 JSON', () => {
    const f = encodeFrame({ a: 'é' });
    assert.equal(f.readUInt32BE(0), f.length - 4);
    assert.equal(f.subarray(4).toString('utf8'), '{"a":"é"}');
  });
  test('decode byte by byte and several frames in one chunk', () => {
    const bytes = Buffer.concat([encodeFrame({ n: 1 }), encodeFrame({ n: 2 }), encodeFrame({ n: 3 })]);
    const d = new FrameDecoder(1024);
    const out = [];
    for (const b of bytes) out.push(...d.push(Buffer.from([b])));
    assert.deepEqual(out.map((x) => JSON.parse(x).n), [1, 2, 3]);
    assert.equal(d.inFrame, false);
    const e = new FrameDecoder(1024);
    assert.deepEqual(e.push(bytes).map((x) => JSON.parse(x).n), [1, 2, 3]);
  });
  test('refuses a length over the cap at the header, and a zero length', () => {
    const d = new FrameDecoder(10);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(11);
    assert.throws(() => d.push(head), ProtocolError);
    assert.throws(() => new FrameDecoder(10).push(Buffer.alloc(4)), ProtocolError);
  });
  test('reports a partial frame', () => {
    const d = new FrameDecoder(100);
    d.push(encodeFrame({ x: 1 }).subarray(0, 6));
    assert.equal(d.inFrame, true);
    assert.match(d.describePartial(), /2 of 7 payload bytes/);
  });
});

describe('errors', () => {
  test('maps data.reason to its class', () => {
    const e = errorFromResponse({ code: -32002, message: 'held', data: { reason: 'lease_held', holder: 'x' } });
    assert.ok(e instanceof LeaseHeld && e instanceof SessiondError && e instanceof Error);
    assert.equal(e.reason, 'lease_held');
    assert.equal(e.code, -32002);
    assert.equal(e.data.holder, 'x');
    assert.equal(e.message, 'held');
    assert.equal(e.name, 'LeaseHeld');
  });
  test('every documented reason has a class with its code', () => {
    const table = {
      parse_error: -32700, invalid_request: -32600, method_not_found: -32601, invalid_params: -32602,
      internal: -32603, not_found: -32001, lease_held: -32002, stale_lease: -32003, unauthenticated: -32004,
      forbidden: -32005, too_large: -32006, rate_limited: -32007, shutting_down: -32008, conflict: -32009,
      storage_full: -32010, unavailable: -32011, overloaded: -32012, timeout: -32013,
    };
    for (const [reason, code] of Object.entries(table)) {
      const e = errorFromResponse({ code, message: 'm', data: { reason } });
      assert.equal(e.reason, reason);
      assert.equal(e.code, code);
      assert.notEqual(e.constructor, SessiondError, reason);
    }
    for (const name of ['ParseError', 'InvalidRequest', 'MethodNotFound', 'InvalidParams', 'InternalError', 'NotFound',
      'LeaseHeld', 'StaleLease', 'Unauthenticated', 'Forbidden', 'TooLarge', 'RateLimited', 'ShuttingDown', 'Conflict',
      'StorageFull', 'Unavailable', 'Overloaded', 'CallTimeout', 'ConnectionClosed', 'ProtocolError']) {
      assert.equal(typeof api[name], 'function', name);
      assert.ok(new api[name]('x') instanceof SessiondError, name);
    }
  });
  test('unknown reasons give the base class; a missing reason falls back to the code', () => {
    const e = errorFromResponse({ code: -32099, message: 'new', data: { reason: 'brand_new' } });
    assert.equal(e.constructor, SessiondError);
    assert.equal(e.reason, 'brand_new');
    const f = errorFromResponse({ code: -32001, message: 'gone' });
    assert.ok(f instanceof NotFound);
    const g = errorFromResponse({ code: -32602, message: 'bad' });
    assert.ok(g instanceof InvalidParams);
    assert.ok(errorFromResponse({ code: 1 }) instanceof api.InternalError);
  });
  test('client-side errors', () => {
    assert.equal(new CallTimeout('t').reason, 'timeout');
    assert.equal(new CallTimeout('t').code, -32013);
    assert.equal(new ConnectionClosed('c').reason, 'connection_closed');
    assert.equal(new ProtocolError('p').reason, 'protocol_error');
    assert.ok(new StaleLease('s') instanceof SessiondError);
  });
});

describe('runClaude argument handling', () => {
  test('refuses flags it manages', () => {
    for (const flag of ['--resume', '-r', '--continue', '-c', '--session-id', '--resume=abc', '--session-id=x']) {
      assert.throws(() => checkArgs(['claude', '-p', flag, 'hi']), TypeError, flag);
    }
    assert.throws(() => checkArgs([]), TypeError);
    checkArgs(['claude', '-p', 'hi', '--', '-c']);
  });
  test('finds the output format', () => {
    assert.deepEqual(findOutputFormat(['claude', '-p', 'x']), { format: null, index: -1, inline: false });
    assert.deepEqual(findOutputFormat(['claude', '--output-format', 'json']), { format: 'json', index: 1, inline: false });
    assert.deepEqual(findOutputFormat(['claude', '--output-format=stream-json']), { format: 'stream-json', index: 1, inline: true });
  });
  test('extracts the prompt', () => {
    assert.deepEqual(extractPrompt(['claude', '-p', 'hello']), { prompt: 'hello', index: 2 });
    assert.deepEqual(extractPrompt(['claude', '--print', 'hello', 'more']), { prompt: 'hello', index: 2 });
    assert.deepEqual(extractPrompt(['claude', '-p', '--model', 'opus', 'the prompt']), { prompt: 'the prompt', index: 4 });
    assert.deepEqual(extractPrompt(['claude', '--output-format', 'json', '-p', '--verbose', 'q']), { prompt: 'q', index: 5 });
    assert.deepEqual(extractPrompt(['claude', '-p', '--model=opus', 'q']), { prompt: 'q', index: 3 });
    assert.deepEqual(extractPrompt(['claude', '-p', '--', '-weird prompt']), { prompt: '-weird prompt', index: 3 });
    assert.deepEqual(extractPrompt(['claude', '-p'], 'from stdin'), { prompt: 'from stdin', index: -1 });
    assert.deepEqual(extractPrompt(['claude', '-p', '--model', 'x'], Buffer.from('buf')), { prompt: 'buf', index: -1 });
    assert.deepEqual(extractPrompt(['claude', '-p']), { prompt: null, index: -1 });
  });
  test('transcript path follows Claude Code', () => {
    assert.equal(
      transcriptPath('abc', { cwd: '/work/my.proj_1', env: { HOME: '/h' } }),
      '/h/.claude/projects/-work-my-proj-1/abc.jsonl',
    );
    assert.equal(
      transcriptPath('abc', { cwd: '/w', env: { HOME: '/h', CLAUDE_CONFIG_DIR: '/cfg' } }),
      '/cfg/projects/-w/abc.jsonl',
    );
  });
});

describe('recap', () => {
  test('format', () => {
    const recap = buildRecap([
      { role: 'user', content: 'remember kiwi' },
      { role: 'assistant', content: 'OK' },
    ]);
    assert.equal(
      recap,
      '[Recap of the earlier conversation, which could not be resumed]\nuser: remember kiwi\nassistant: OK\n[End of recap]\n\n',
    );
    assert.equal(buildRecap([]), '');
  });
  test('bounded to 8000 characters, keeping the newest messages', () => {
    const messages = Array.from({ length: 20 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: `${i}:${'x'.repeat(1000)}` }));
    const recap = buildRecap(messages);
    assert.ok(recap.length <= 8000, `${recap.length}`);
    assert.ok(recap.startsWith(RECAP_HEADER));
    assert.ok(recap.includes('19:'));
    assert.ok(!recap.includes('\nuser: 0:'));
    const huge = buildRecap([{ role: 'user', content: 'y'.repeat(50_000) }]);
    assert.ok(huge.length <= 8000 && huge.length > 7000, `${huge.length}`);
  });
});

describe('parseCliOutput', () => {
  const result = { type: 'result', subtype: 'success', is_error: false, result: 'hi', session_id: 's1' };
  test('single object, array form, stream-json', () => {
    assert.deepEqual(parseCliOutput(JSON.stringify(result)), result);
    assert.deepEqual(parseCliOutput(JSON.stringify([{ type: 'system' }, result, { type: 'other' }])), result);
    const lines = [{ type: 'system' }, { type: 'assistant' }, result].map((x) => JSON.stringify(x)).join('\n');
    assert.deepEqual(parseCliOutput(lines, 'stream-json'), result);
    assert.equal(parseCliOutput('not json'), null);
    assert.equal(parseCliOutput(''), null);
    assert.deepEqual(parseCliOutput(`warning: something\n${JSON.stringify(result)}\n`), result);
  });
});
