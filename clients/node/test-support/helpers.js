// Test support: start a real sessiond per test file, raw frame I/O, temporary folders.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const NODE_CLIENT_DIR = path.resolve(here, '..');
export const REPO = path.resolve(here, '../../..');
export const SESSIOND_BIN = process.env.SESSIOND_BIN || path.join(REPO, '.build/debug/sessiond');
export const FAKE_CLAUDE = path.join(here, 'fake-claude.js');
export const FIXTURES_DIR = process.env.SESSIOND_FIXTURES_DIR || path.join(REPO, 'Tests/Fixtures/frames');

/** Why server-backed tests are skipped (the binary is missing), or false. */
export function serverSkipReason() {
  try {
    fs.accessSync(SESSIOND_BIN, fs.constants.X_OK);
    return false;
  } catch {
    return `no sessiond binary at ${SESSIOND_BIN} (build it or set SESSIOND_BIN)`;
  }
}

export async function makeTempDir(prefix = 'sessiond-node-') {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

/**
 * Starts `sessiond --listen 127.0.0.1:0 --db <tmp>/db.sqlite [--unix <tmp>/s.sock]` and waits for its
 * LISTENING lines. Returns {addr, port, unixPath, dir, proc, log(), stop()}.
 */
export async function startServer({ unix = false, extraArgs = [], startTimeoutMs = 20_000 } = {}) {
  const dir = await makeTempDir();
  const unixPath = unix ? path.join(dir, 's.sock') : null;
  const argv = ['--listen', '127.0.0.1:0', '--db', path.join(dir, 'db.sqlite'), ...extraArgs];
  if (unixPath) argv.push('--unix', unixPath);
  const proc = spawn(SESSIOND_BIN, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SWIFT_BACKTRACE: 'enable=no' },
  });
  let stderr = '';
  let stdout = '';
  proc.stderr.on('data', (c) => {
    stderr += c;
    if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
  });
  const server = {
    dir,
    proc,
    unixPath,
    port: null,
    addr: null,
    log: () => stderr,
    stdout: () => stdout,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(t);
      }
      await fsp.rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await new Promise((resolve, reject) => {
      let gotUnix = !unix;
      const timer = setTimeout(
        () => reject(new Error(`sessiond did not print LISTENING within ${startTimeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`)),
        startTimeoutMs,
      );
      proc.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      proc.on('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`sessiond exited (${code ?? signal}) before listening\nstdout: ${stdout}\nstderr: ${stderr}`));
      });
      let partial = '';
      proc.stdout.on('data', (chunk) => {
        stdout += chunk;
        partial += chunk;
        let nl;
        while ((nl = partial.indexOf('\n')) >= 0) {
          const line = partial.slice(0, nl).trim();
          partial = partial.slice(nl + 1);
          const tcp = /^LISTENING tcp (\S+):(\d+)$/.exec(line);
          if (tcp) {
            server.port = Number(tcp[2]);
            server.addr = `${tcp[1]}:${tcp[2]}`;
          }
          if (/^LISTENING unix (\S+)$/.test(line)) gotUnix = true;
          if (server.addr && gotUnix) {
            clearTimeout(timer);
            resolve();
          }
        }
      });
    });
  } catch (err) {
    await server.stop();
    throw err;
  }
  proc.removeAllListeners('exit');
  return server;
}

/** A raw connection for fixture replay: send frames or bytes, read frames one by one, see the close. */
export async function rawConnect(port, host = '127.0.0.1') {
  const socket = net.createConnection({ host, port });
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let buffered = Buffer.alloc(0);
  let closed = false;
  const waiters = [];
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };
  socket.on('data', (c) => {
    buffered = Buffer.concat([buffered, c]);
    wake();
  });
  socket.on('close', () => {
    closed = true;
    wake();
  });
  socket.on('error', () => {});
  const waitFor = (cond, timeoutMs, what) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const value = cond();
        if (value !== undefined) {
          clearTimeout(timer);
          resolve(value);
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
      const loop = () => {
        if (!check()) waiters.push(loop);
      };
      loop();
    });
  return {
    socket,
    get closed() {
      return closed;
    },
    send(obj) {
      const body = Buffer.from(JSON.stringify(obj), 'utf8');
      const head = Buffer.alloc(4);
      head.writeUInt32BE(body.length);
      socket.write(Buffer.concat([head, body]));
    },
    sendRaw(bytes) {
      socket.write(bytes);
    },
    /** Resolves to the next frame parsed as JSON, or null when the connection closed first. */
    readFrame(timeoutMs = 5000) {
      return waitFor(
        () => {
          if (buffered.length >= 4) {
            const n = buffered.readUInt32BE(0);
            if (buffered.length >= 4 + n) {
              const body = buffered.subarray(4, 4 + n);
              buffered = buffered.subarray(4 + n);
              return JSON.parse(body.toString('utf8'));
            }
          }
          return closed ? null : undefined;
        },
        timeoutMs,
        'a frame',
      );
    },
    waitClosed(timeoutMs = 5000) {
      return waitFor(() => (closed ? true : undefined), timeoutMs, 'the server to close the connection');
    },
    close() {
      socket.destroy();
    },
  };
}

/** A tiny fake server on 127.0.0.1:0; `onConnection(socket, frames)` gets each connection. */
export async function fakeServer(onConnection) {
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onConnection(socket);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    addr: `127.0.0.1:${server.address().port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Reads request frames from a socket: calls `onRequest(message)` for each. */
export function onRequests(socket, onRequest) {
  let buffered = Buffer.alloc(0);
  socket.on('data', (c) => {
    buffered = Buffer.concat([buffered, c]);
    while (buffered.length >= 4) {
      const n = buffered.readUInt32BE(0);
      if (buffered.length < 4 + n) break;
      const body = buffered.subarray(4, 4 + n);
      buffered = buffered.subarray(4 + n);
      onRequest(JSON.parse(body.toString('utf8')));
    }
  });
}

/** Encodes a frame from a string or object. */
export function frame(payload) {
  const body = Buffer.isBuffer(payload)
    ? payload
    : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload), 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  return Buffer.concat([head, body]);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
