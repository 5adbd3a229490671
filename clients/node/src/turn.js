// turn(): acquire → body → complete, with the lease renewed in the background and always released.

import { ConnectionClosed, NotFound, StaleLease } from './errors.js';

export const DEFAULT_WAIT_MS = 600_000;
const MIN_RENEW_INTERVAL_MS = 100;

/** A short, single-line reason for an error, for `session.complete` (at most 200 characters). */
export function shortReason(err, prefix = '') {
  let text;
  if (err instanceof Error) text = `${err.name}: ${err.message}`;
  else text = String(err);
  text = `${prefix}${text}`.replace(/\s+/g, ' ').trim();
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

/**
 * Keeps a lease alive: renews it every third of its duration until stopped. When a renewal says the lease is
 * gone (stale_lease, not_found) it stops and aborts `signal`.
 */
export class LeaseKeeper {
  constructor(client, sessionId, lease, { leaseSeconds, onError } = {}) {
    this.client = client;
    this.sessionId = sessionId;
    this.lease = lease;
    this.leaseSeconds = leaseSeconds;
    this.onError = onError ?? null;
    this.lost = null;
    this._controller = new AbortController();
    this._timer = null;
    this._inflight = null;
    this._stopped = false;
  }

  /** Aborted when the lease is lost. */
  get signal() {
    return this._controller.signal;
  }

  /** The renewal interval for the current lease: a third of its duration. */
  intervalMs() {
    let durationMs;
    if (Number.isFinite(this.leaseSeconds) && this.leaseSeconds > 0) durationMs = this.leaseSeconds * 1000;
    else durationMs = Date.parse(this.lease?.expiresAt) - Date.now();
    if (!Number.isFinite(durationMs)) durationMs = 600_000;
    return Math.max(MIN_RENEW_INTERVAL_MS, Math.floor(durationMs / 3));
  }

  start() {
    this._stopped = false;
    this.#schedule();
    return this;
  }

  /** Replaces the lease (for example the one kept by `session.complete` with `keepLease`). */
  setLease(lease) {
    this.lease = lease;
    if (!this._stopped) {
      clearTimeout(this._timer);
      this.#schedule();
    }
  }

  #schedule() {
    if (this._stopped || this.lost) return;
    this._timer = setTimeout(() => {
      this._inflight = this.renew().finally(() => {
        this._inflight = null;
        this.#schedule();
      });
    }, this.intervalMs());
    this._timer.unref?.();
  }

  /** Renews once now. Never throws: a failure is reported to `onError` (and marks the lease lost if it is). */
  async renew() {
    const lease = this.lease;
    try {
      const params = { sessionId: this.sessionId, lease };
      if (this.leaseSeconds !== undefined) params.leaseSeconds = this.leaseSeconds;
      const result = await this.client.renew(params);
      // Keep the newest lease, unless it was replaced while this renewal was in flight.
      if (this.lease === lease && result?.lease) this.lease = result.lease;
    } catch (err) {
      if (this._stopped && err instanceof StaleLease) return; // renewal racing a completion
      if (err instanceof StaleLease || err instanceof NotFound || err instanceof ConnectionClosed) {
        this.lost = err;
        this._stopped = true;
        this._controller.abort(err);
      }
      this.onError?.(err);
    }
  }

  /** Stops renewing and waits for a renewal in flight. */
  async stop() {
    this._stopped = true;
    clearTimeout(this._timer);
    this._timer = null;
    if (this._inflight) await this._inflight.catch(() => {});
  }
}

/** What the body of `turn()` sees. */
export class Turn {
  constructor(acquired, keeper) {
    this.acquired = acquired;
    this.session = acquired.session;
    this.decision = acquired.decision;
    this.created = acquired.created;
    this.transcript = acquired.transcript;
    this._keeper = keeper;
    this.outcome = null;
  }

  /** The current lease (renewals update it). */
  get lease() {
    return this._keeper.lease;
  }

  get sessionId() {
    return this.session.id;
  }

  /** Whether the registry says to resume (`--resume <cliSessionId>`). */
  get resume() {
    return this.decision?.action === 'resume';
  }

  /** The CLI session id to resume, or null for a fresh start. */
  get cliSessionId() {
    return this.resume ? this.decision.cliSessionId : null;
  }

  /** Whether to resume as a fork (`--fork-session`). */
  get fork() {
    return this.resume && this.decision.fork === true;
  }

  /** Aborted if the lease is lost while the body runs. */
  get signal() {
    return this._keeper.signal;
  }

  /** Renews the lease now (it is also renewed in the background). */
  renew() {
    return this._keeper.renew();
  }

  /** Records a successful turn: `{cliSessionId, costUsd?, inputTokens?, outputTokens?, messages?}`. */
  ok(result = {}) {
    if (typeof result.cliSessionId !== 'string' || result.cliSessionId === '') {
      throw new TypeError('t.ok() needs the cliSessionId the CLI reported');
    }
    const outcome = { outcome: 'ok', cliSessionId: result.cliSessionId };
    for (const field of ['costUsd', 'inputTokens', 'outputTokens', 'messages']) {
      if (result[field] !== undefined && result[field] !== null) outcome[field] = result[field];
    }
    this.outcome = outcome;
  }

  /** Records that the head could not be resumed. */
  resumeFailed(reason = 'resume_failed') {
    this.outcome = { outcome: 'resume_failed', reason: String(reason) };
  }

  /** Records that the turn failed otherwise; the chain is unchanged. */
  error(reason = 'error') {
    this.outcome = { outcome: 'error', reason: String(reason) };
  }
}

/**
 * Runs one turn under a lease: acquire (waiting up to `waitMs`, default 600 s), `body(t)`, then
 * `session.complete` with the outcome the body recorded. A body that throws completes with `error`; a body
 * that records nothing completes with `error` / `no_outcome`. The lease is renewed every third of its
 * duration while the body runs, and is always given back.
 *
 * Resolves to `{value, outcome, completion, acquired}`; rethrows the body's error after completing.
 */
export async function turn(client, key, opts, body) {
  if (typeof opts === 'function') {
    body = opts;
    opts = {};
  }
  if (typeof body !== 'function') throw new TypeError('turn() needs a body function');
  const { waitMs = DEFAULT_WAIT_MS, renew = true, onRenewError, timeoutMs, ...acquireParams } = opts ?? {};
  const acquired = await client.acquire({ ...acquireParams, key, waitMs }, timeoutMs ? { timeoutMs } : {});
  const sessionId = acquired.session.id;
  const keeper = new LeaseKeeper(client, sessionId, acquired.lease, {
    leaseSeconds: acquireParams.leaseSeconds,
    onError: onRenewError,
  });
  if (renew) keeper.start();
  const t = new Turn(acquired, keeper);

  let value;
  let bodyError;
  let threw = false;
  try {
    value = await body(t);
  } catch (err) {
    threw = true;
    bodyError = err;
  }
  await keeper.stop();

  const outcome = threw
    ? { outcome: 'error', reason: shortReason(bodyError, 'exception: ') }
    : (t.outcome ?? { outcome: 'error', reason: 'no_outcome' });

  let completion;
  try {
    completion = await client.complete({ sessionId, lease: keeper.lease, ...outcome });
  } catch (completeError) {
    // Make sure the lease is given back even when the completion itself was refused.
    if (!(completeError instanceof StaleLease) && !(completeError instanceof ConnectionClosed)) {
      await client.release({ sessionId, lease: keeper.lease }).catch(() => {});
    }
    if (threw) {
      if (bodyError !== null && typeof bodyError === 'object' && !('completeError' in bodyError)) {
        try {
          bodyError.completeError = completeError;
        } catch {
          // a frozen error object: leave it alone
        }
      }
      throw bodyError;
    }
    throw completeError;
  }
  if (threw) throw bodyError;
  return { value, outcome: outcome.outcome, completion, acquired };
}
