// The sessiond client: one connection, pipelined JSON-RPC calls matched by id.

import net from 'node:net';

import { DEFAULT_ADDR, formatAddress, parseAddress } from './address.js';
import {
  CallTimeout,
  ConnectionClosed,
  ProtocolError,
  SessiondError,
  TooLarge,
  errorFromResponse,
} from './errors.js';
import { DEFAULT_MAX_FRAME_BYTES, FrameDecoder, encodeFrame } from './frame.js';

export const CLIENT_VERSION = '0.1.0';
export const PROTOCOL_VERSION = 1;
export const DEFAULT_CLIENT_NAME = 'sessiond-client-node';
export const DEFAULT_TIMEOUT_MS = 30_000;
/** How many ids of timed-out calls are remembered, so that their late responses are ignored. */
const ABANDONED_IDS_KEPT = 10_000;

const asyncDispose = Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose');
/** Marks the call options of the handshake `hello`, which must not wait for the handshake. */
const HANDSHAKE = Symbol('handshake');

/** Reduces a Lease (or LeaseProof) to the `{token, fence}` a write carries. */
function leaseProof(lease) {
  if (lease === undefined || lease === null) return lease;
  return { token: lease.token, fence: lease.fence };
}

function toBase64(data) {
  if (typeof data === 'string') return Buffer.from(data, 'utf8').toString('base64');
  if (Buffer.isBuffer(data)) return data.toString('base64');
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64');
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString('base64');
  throw new TypeError('transcript data must be a Buffer, Uint8Array, ArrayBuffer or string');
}

function isoDate(value) {
  return value instanceof Date ? value.toISOString() : value;
}

export class Client {
  /**
   * @param {object} [opts] see index.d.ts `ClientOptions`
   */
  constructor(opts = {}) {
    const env = opts.env ?? process.env;
    const addr = opts.addr ?? (env.SESSIOND_ADDR ? env.SESSIOND_ADDR : DEFAULT_ADDR);
    this.address = typeof addr === 'string' ? parseAddress(addr) : { ...addr };
    if (this.address.kind === undefined) this.address.kind = this.address.path ? 'unix' : 'tcp';
    this.token = opts.token !== undefined ? opts.token || undefined : env.SESSIOND_TOKEN || undefined;
    this.clientName = opts.clientName ?? DEFAULT_CLIENT_NAME;
    this.clientVersion = opts.clientVersion ?? CLIENT_VERSION;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? this.timeoutMs;
    this.maxFrameBytes = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.sendHello = opts.hello ?? true;
    this.onNotification = opts.onNotification ?? null;
    /** The `hello` result, once the handshake is done. */
    this.serverInfo = null;

    this._socket = null;
    this._decoder = new FrameDecoder(this.maxFrameBytes);
    this._pending = new Map();
    this._abandoned = new Set();
    this._nextId = 1;
    this._state = 'idle'; // idle → connecting → open → closed
    this._opening = null;
    this._closedError = null;
    this._closedPromise = null;
    this._socketError = null;
  }

  /** Connects, sends `hello` (unless `hello: false`), and resolves to the ready client. */
  static async connect(opts = {}) {
    const client = new Client(opts);
    await client.open();
    return client;
  }

  /** The address as text, for messages. */
  get addressText() {
    return formatAddress(this.address);
  }

  /** Whether the connection is open (not closed, not failed). */
  get isOpen() {
    return this._state === 'open';
  }

  /** Number of calls waiting for a response. */
  get pendingCount() {
    return this._pending.size;
  }

  /** Opens the connection (idempotent). Called by `Client.connect` and lazily by the first call. */
  open() {
    if (this._opening) return this._opening;
    if (this._state === 'closed') return Promise.reject(this.#closedError('open'));
    this._state = 'connecting';
    this._opening = this.#open();
    // Avoid an unhandled rejection when nobody awaits `open()` (for example a lazy open from a call).
    this._opening.catch(() => {});
    return this._opening;
  }

  async #open() {
    await this.#connectSocket();
    if (this.sendHello) {
      try {
        // Other calls wait for the handshake: the server runs a connection's requests concurrently, so a call
        // sent next to the hello could be served before it (and be refused when auth is on).
        await this.hello({}, { timeoutMs: this.connectTimeoutMs, [HANDSHAKE]: true });
      } catch (err) {
        await this.close();
        throw err;
      }
    }
    if (this._state === 'connecting') this._state = 'open';
  }

  #connectSocket() {
    return new Promise((resolve, reject) => {
      const where = this.addressText;
      const socket =
        this.address.kind === 'unix'
          ? net.createConnection({ path: this.address.path })
          : net.createConnection({ host: this.address.host, port: this.address.port });
      this._socket = socket;
      socket.setNoDelay?.(true);
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        socket.destroy();
        const err = new CallTimeout(`connecting to sessiond at ${where} timed out after ${this.connectTimeoutMs} ms`);
        this.#fail(err);
        reject(err);
      }, this.connectTimeoutMs);
      socket.once('connect', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve();
      });
      socket.on('data', (chunk) => this.#onData(chunk));
      socket.on('error', (err) => {
        this._socketError = err;
        if (!settled) {
          settled = true;
          clearTimeout(timer);
          const closed = new ConnectionClosed(`cannot connect to sessiond at ${where}: ${err.message}`, {
            cause: err,
          });
          this.#fail(closed);
          reject(closed);
        }
      });
      socket.on('close', () => this.#onSocketClose());
    });
  }

  #onData(chunk) {
    if (this._state === 'closed') return;
    let frames;
    try {
      frames = this._decoder.push(chunk);
    } catch (err) {
      this.#fail(err);
      return;
    }
    for (const frame of frames) {
      if (this._state === 'closed') return;
      this.#onFrame(frame);
    }
  }

  #onFrame(payload) {
    let message;
    try {
      message = JSON.parse(payload.toString('utf8'));
    } catch (err) {
      const preview = payload.subarray(0, 60).toString('utf8');
      this.#fail(new ProtocolError(`server sent invalid JSON (${err.message}): ${JSON.stringify(preview)}`));
      return;
    }
    if (message === null || typeof message !== 'object' || Array.isArray(message)) {
      this.#fail(new ProtocolError('server sent a message that is not a JSON object'));
      return;
    }
    const hasId = Object.hasOwn(message, 'id') && message.id !== null;
    if (!hasId && typeof message.method === 'string') {
      // A server notification: reserved for future events; ignore unless asked.
      if (this.onNotification) {
        try {
          this.onNotification(message.method, message.params);
        } catch {
          // a listener's error is not the connection's problem
        }
      }
      return;
    }
    if (!hasId) {
      if (Object.hasOwn(message, 'error')) {
        // A connection-level error (framing, unparseable request): the server closes after it.
        const err = errorFromResponse(message.error);
        err.message = `sessiond closed the connection: ${err.message}`;
        this.#fail(err);
      } else {
        this.#fail(new ProtocolError('server sent a response without an id'));
      }
      return;
    }
    const id = message.id;
    const call = this._pending.get(id);
    if (call === undefined) {
      if (this._abandoned.delete(id)) return; // the late answer to a call that timed out or was aborted
      this.#fail(new ProtocolError(`server sent a response for unknown id ${JSON.stringify(id)}`));
      return;
    }
    this.#settle(id, call);
    if (Object.hasOwn(message, 'error')) {
      call.reject(errorFromResponse(message.error));
    } else if (Object.hasOwn(message, 'result')) {
      call.resolve(message.result);
    } else {
      call.reject(new ProtocolError(`response ${JSON.stringify(id)} has neither result nor error`));
    }
  }

  #settle(id, call) {
    this._pending.delete(id);
    clearTimeout(call.timer);
    if (call.signal && call.onAbort) call.signal.removeEventListener('abort', call.onAbort);
  }

  #abandon(id) {
    this._abandoned.add(id);
    if (this._abandoned.size > ABANDONED_IDS_KEPT) {
      this._abandoned.delete(this._abandoned.values().next().value);
    }
  }

  #onSocketClose() {
    if (this._state === 'closed') return;
    if (this._decoder.inFrame) {
      this.#fail(
        new ProtocolError(
          `sessiond closed the connection in the middle of a frame (truncated frame: ${this._decoder.describePartial()})`,
        ),
      );
    } else {
      const why = this._socketError ? `: ${this._socketError.message}` : '';
      this.#fail(
        new ConnectionClosed(`sessiond closed the connection${why}`, { cause: this._socketError ?? undefined }),
      );
    }
  }

  /** Makes the connection unusable: every pending call and every later call rejects with `err`. */
  #fail(err) {
    if (this._state === 'closed') return;
    this._state = 'closed';
    this._closedError = err;
    const pending = [...this._pending.entries()];
    this._pending.clear();
    for (const [id, call] of pending) {
      this.#settle(id, call);
      call.reject(err);
    }
    if (this._socket && !this._socket.destroyed) this._socket.destroy();
  }

  #closedError(method) {
    const cause = this._closedError;
    if (cause instanceof ConnectionClosed) return new ConnectionClosed(`${method}: ${cause.message}`, { cause });
    return new ConnectionClosed(`${method}: the connection is closed${cause ? ` (${cause.message})` : ''}`, { cause });
  }

  /**
   * Sends one request and resolves to its `result`, or rejects with a SessiondError subclass.
   * @param {string} method
   * @param {object} [params]
   * @param {{timeoutMs?: number, signal?: AbortSignal}} [callOpts]
   */
  async call(method, params, callOpts = {}) {
    if (typeof method !== 'string' || method === '') throw new TypeError('method must be a non-empty string');
    if (this._state === 'idle') await this.open();
    else if (this._state === 'connecting' && !callOpts[HANDSHAKE]) await this._opening;
    if (this._state === 'closed') throw this.#closedError(method);

    const id = this._nextId++;
    const request = { jsonrpc: '2.0', id, method };
    if (params !== undefined && params !== null) request.params = params;
    let frame;
    try {
      frame = encodeFrame(request);
    } catch (err) {
      throw new TypeError(`cannot encode ${method} params: ${err.message}`, { cause: err });
    }
    const limit = Math.min(this.serverInfo?.maxFrameBytes ?? Infinity, this.maxFrameBytes);
    if (frame.length - 4 > limit) {
      // The server would answer too_large and close the connection; refuse this call alone instead.
      throw new TooLarge(`${method} request of ${frame.length - 4} bytes is over the frame limit of ${limit} bytes`, {
        data: { reason: 'too_large', size: frame.length - 4, maxFrameBytes: limit },
      });
    }
    const timeoutMs = callOpts.timeoutMs ?? this.timeoutMs;
    const signal = callOpts.signal;
    if (signal?.aborted) throw signal.reason ?? new Error('aborted');

    return new Promise((resolve, reject) => {
      const call = { resolve, reject, timer: null, signal, onAbort: null, method };
      call.timer = setTimeout(() => {
        if (this._pending.get(id) !== call) return;
        this.#settle(id, call);
        this.#abandon(id);
        reject(new CallTimeout(`${method} got no response within ${timeoutMs} ms`, { data: { reason: 'timeout', method } }));
      }, timeoutMs);
      if (signal) {
        call.onAbort = () => {
          if (this._pending.get(id) !== call) return;
          this.#settle(id, call);
          this.#abandon(id);
          reject(signal.reason ?? new Error('aborted'));
        };
        signal.addEventListener('abort', call.onAbort, { once: true });
      }
      this._pending.set(id, call);
      this._socket.write(frame);
    });
  }

  /**
   * Closes the connection. Pending calls reject with ConnectionClosed. Safe to call more than once.
   */
  close() {
    if (this._closedPromise) return this._closedPromise;
    const socket = this._socket;
    this.#fail(new ConnectionClosed('the client closed the connection'));
    this._closedPromise = new Promise((resolve) => {
      if (!socket || socket.closed || socket.destroyed) {
        resolve();
        return;
      }
      socket.once('close', () => resolve());
      socket.destroy();
    });
    return this._closedPromise;
  }

  [asyncDispose]() {
    return this.close();
  }

  /** Lets the process exit while the connection is idle (see `net.Socket.unref`). */
  unref() {
    this._socket?.unref();
    return this;
  }

  ref() {
    this._socket?.ref();
    return this;
  }

  // ---- Methods (docs/PROTOCOL.md "Methods"). Each takes a params object and optional call options. ----

  /** `hello`. Sent on connect; call again to present another token. */
  async hello(params = {}, callOpts) {
    const token = params.token !== undefined ? params.token : this.token;
    const request = {
      client: params.client ?? { name: this.clientName, version: this.clientVersion },
      protocolVersion: params.protocolVersion ?? PROTOCOL_VERSION,
    };
    if (token) request.token = token;
    const result = await this.call('hello', request, callOpts);
    this.serverInfo = result;
    return result;
  }

  health(callOpts) {
    return this.call('health', undefined, callOpts);
  }

  /** `session.acquire`. The call's timeout is extended by `waitMs` unless given explicitly. */
  acquire(params, callOpts = {}) {
    const waitMs = Number.isFinite(params?.waitMs) ? params.waitMs : 0;
    return this.call('session.acquire', params, {
      ...callOpts,
      timeoutMs: callOpts.timeoutMs ?? this.timeoutMs + waitMs,
    });
  }

  complete(params, callOpts) {
    return this.call('session.complete', { ...params, lease: leaseProof(params?.lease) }, callOpts);
  }

  renew(params, callOpts) {
    return this.call('session.renew', { ...params, lease: leaseProof(params?.lease) }, callOpts);
  }

  release(params, callOpts) {
    return this.call('session.release', { ...params, lease: leaseProof(params?.lease) }, callOpts);
  }

  touch(params, callOpts) {
    return this.call('session.touch', params, callOpts);
  }

  get(params, callOpts) {
    return this.call('session.get', params, callOpts);
  }

  list(params = {}, callOpts) {
    return this.call('session.list', params, callOpts);
  }

  update(params, callOpts) {
    return this.call('session.update', params, callOpts);
  }

  delete(params, callOpts) {
    return this.call('session.delete', params, callOpts);
  }

  fork(params, callOpts) {
    return this.call('session.fork', params, callOpts);
  }

  history(params, callOpts) {
    return this.call('session.history', params, callOpts);
  }

  messagesAppend(params, callOpts) {
    const request = { ...params };
    if (request.lease !== undefined) request.lease = leaseProof(request.lease);
    return this.call('messages.append', request, callOpts);
  }

  messagesList(params, callOpts) {
    return this.call('messages.list', params, callOpts);
  }

  /** `transcript.append`; `data` is a Buffer (or Uint8Array / string), sent as base64. */
  transcriptAppend(params, callOpts) {
    return this.call(
      'transcript.append',
      { ...params, lease: leaseProof(params?.lease), data: toBase64(params?.data ?? Buffer.alloc(0)) },
      callOpts,
    );
  }

  /** `transcript.read`; the result's `data` is a Buffer. */
  async transcriptRead(params, callOpts) {
    const result = await this.call('transcript.read', params, callOpts);
    if (typeof result?.data !== 'string') {
      throw new ProtocolError('transcript.read result has no base64 data');
    }
    return { ...result, data: Buffer.from(result.data, 'base64') };
  }

  auditList(params = {}, callOpts) {
    const request = { ...params };
    if (request.since !== undefined) request.since = isoDate(request.since);
    if (request.until !== undefined) request.until = isoDate(request.until);
    return this.call('audit.list', request, callOpts);
  }

  stats(callOpts) {
    return this.call('stats', undefined, callOpts);
  }

  tokensCreate(params, callOpts) {
    return this.call('tokens.create', params, callOpts);
  }

  tokensList(callOpts) {
    return this.call('tokens.list', undefined, callOpts);
  }

  tokensRevoke(params, callOpts) {
    return this.call('tokens.revoke', params, callOpts);
  }
}

export { leaseProof, SessiondError };
