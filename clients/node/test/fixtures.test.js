// Golden fixtures: replay every Tests/Fixtures/frames/*.json scenario against a fresh sessiond over a raw socket
// (format: docs/PROTOCOL.md "Golden fixtures").

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { FIXTURES_DIR, rawConnect, serverSkipReason, startServer } from '../test-support/helpers.js';

const DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** Checks `actual` against the pattern `expected`; returns a list of mismatches (JSON paths). */
export function match(expected, actual, captures, where = '$', problems = []) {
  if (typeof expected === 'string' && expected.startsWith('$')) {
    if (expected === '$any') return problems;
    if (expected === '$string') {
      if (typeof actual !== 'string') problems.push(`${where}: expected a string, got ${JSON.stringify(actual)}`);
      return problems;
    }
    if (expected === '$number') {
      if (typeof actual !== 'number') problems.push(`${where}: expected a number, got ${JSON.stringify(actual)}`);
      return problems;
    }
    if (expected === '$date') {
      if (typeof actual !== 'string' || !DATE.test(actual) || Number.isNaN(Date.parse(actual))) {
        problems.push(`${where}: expected an ISO-8601 date, got ${JSON.stringify(actual)}`);
      }
      return problems;
    }
    if (expected.startsWith('$capture:')) {
      if (actual === undefined) problems.push(`${where}: expected a value to capture, got nothing`);
      else captures[expected.slice('$capture:'.length)] = actual;
      return problems;
    }
    if (expected.startsWith('$ref:')) {
      const name = expected.slice('$ref:'.length);
      if (!Object.hasOwn(captures, name)) problems.push(`${where}: $ref:${name} was never captured`);
      else if (JSON.stringify(actual) !== JSON.stringify(captures[name])) {
        problems.push(`${where}: expected ${JSON.stringify(captures[name])} ($ref:${name}), got ${JSON.stringify(actual)}`);
      }
      return problems;
    }
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) problems.push(`${where}: expected an array, got ${JSON.stringify(actual)}`);
    else if (actual.length !== expected.length) {
      problems.push(`${where}: expected ${expected.length} elements, got ${actual.length}: ${JSON.stringify(actual)}`);
    } else expected.forEach((e, i) => match(e, actual[i], captures, `${where}[${i}]`, problems));
    return problems;
  }
  if (expected !== null && typeof expected === 'object') {
    if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) {
      problems.push(`${where}: expected an object, got ${JSON.stringify(actual)}`);
      return problems;
    }
    for (const [k, v] of Object.entries(expected)) {
      if (!Object.hasOwn(actual, k)) {
        if (v !== '$any') problems.push(`${where}.${k}: missing (expected ${JSON.stringify(v)})`);
        continue;
      }
      match(v, actual[k], captures, `${where}.${k}`, problems);
    }
    return problems;
  }
  if (expected !== actual) problems.push(`${where}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  return problems;
}

/** Replaces every "$ref:NAME" string with the captured value. */
export function substitute(value, captures) {
  if (typeof value === 'string' && value.startsWith('$ref:')) {
    const name = value.slice('$ref:'.length);
    if (!Object.hasOwn(captures, name)) throw new Error(`fixture refers to $ref:${name}, which was never captured`);
    return captures[name];
  }
  if (Array.isArray(value)) return value.map((v) => substitute(v, captures));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, captures)]));
  }
  return value;
}

const dirMissing = !fs.existsSync(FIXTURES_DIR);
const files = dirMissing ? [] : fs.readdirSync(FIXTURES_DIR).filter((f) => f.endsWith('.json')).sort();
const skip = dirMissing ? `no fixture directory at ${FIXTURES_DIR}` : serverSkipReason();

describe('golden fixtures', { skip }, () => {
  test('the fixture directory holds scenarios', () => {
    assert.ok(files.length > 0, `no *.json in ${FIXTURES_DIR}`);
  });

  for (const file of files) {
    test(file, async () => {
      const scenario = JSON.parse(fs.readFileSync(path.join(FIXTURES_DIR, file), 'utf8'));
      assert.ok(Array.isArray(scenario.steps), `${file}: no steps`);
      const server = await startServer();
      let conn;
      try {
        conn = await rawConnect(server.port);
        const captures = {};
        for (const [i, step] of scenario.steps.entries()) {
          const label = `${file} step ${i}${step.send?.method ? ` (${step.send.method})` : ''}`;
          if (step.sendRaw !== undefined) conn.sendRaw(Buffer.from(step.sendRaw.replace(/\s+/g, ''), 'hex'));
          else if (step.send !== undefined) conn.send(substitute(step.send, captures));
          if (step.expect !== undefined) {
            const response = await conn.readFrame(10_000);
            assert.notEqual(response, null, `${label}: the connection closed before the answer`);
            const problems = match(step.expect, response, captures);
            assert.deepEqual(problems, [], `${label}: response ${JSON.stringify(response)}`);
          }
          if (step.expectClose) await conn.waitClosed(5000);
        }
      } finally {
        conn?.close();
        await server.stop();
      }
    });
  }
});
