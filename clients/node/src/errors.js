// Error classes: one per stable `data.reason` (docs/PROTOCOL.md "Errors"), plus client-side ones.

/** Base class of every error this client raises. `reason` is the stable type; never branch on `message`. */
export class SessiondError extends Error {
  /**
   * @param {string} message
   * @param {{reason?: string, code?: number|null, data?: object, cause?: unknown}} [opts]
   */
  constructor(message, { reason, code, data, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    this.reason = reason ?? new.target.reason ?? 'unknown';
    this.code = code ?? new.target.code ?? null;
    this.data = data ?? { reason: this.reason };
  }
}

function reasonClass(name, reason, code) {
  // A named class (so stack traces and `err.name` read well) with static reason/code.
  const cls = {
    [name]: class extends SessiondError {},
  }[name];
  cls.reason = reason;
  cls.code = code;
  return cls;
}

export const ParseError = reasonClass('ParseError', 'parse_error', -32700);
export const InvalidRequest = reasonClass('InvalidRequest', 'invalid_request', -32600);
export const MethodNotFound = reasonClass('MethodNotFound', 'method_not_found', -32601);
export const InvalidParams = reasonClass('InvalidParams', 'invalid_params', -32602);
export const InternalError = reasonClass('InternalError', 'internal', -32603);
export const NotFound = reasonClass('NotFound', 'not_found', -32001);
export const LeaseHeld = reasonClass('LeaseHeld', 'lease_held', -32002);
export const StaleLease = reasonClass('StaleLease', 'stale_lease', -32003);
export const Unauthenticated = reasonClass('Unauthenticated', 'unauthenticated', -32004);
export const Forbidden = reasonClass('Forbidden', 'forbidden', -32005);
export const TooLarge = reasonClass('TooLarge', 'too_large', -32006);
export const RateLimited = reasonClass('RateLimited', 'rate_limited', -32007);
export const ShuttingDown = reasonClass('ShuttingDown', 'shutting_down', -32008);
export const Conflict = reasonClass('Conflict', 'conflict', -32009);
export const StorageFull = reasonClass('StorageFull', 'storage_full', -32010);
export const Unavailable = reasonClass('Unavailable', 'unavailable', -32011);
export const Overloaded = reasonClass('Overloaded', 'overloaded', -32012);

/** Client side: no response within the call's timeout (reason `timeout`, code -32013). */
export const CallTimeout = reasonClass('CallTimeout', 'timeout', -32013);
/** Client side: the connection is closed (by `close()`, by the server, or after a fatal error). */
export const ConnectionClosed = reasonClass('ConnectionClosed', 'connection_closed', null);
/** Client side: the server sent bytes that break the protocol (bad frame, bad JSON, unknown id). */
export const ProtocolError = reasonClass('ProtocolError', 'protocol_error', null);

/** Every server reason and its class. */
export const ERROR_CLASSES = Object.freeze(
  Object.fromEntries(
    [
      ParseError, InvalidRequest, MethodNotFound, InvalidParams, InternalError, NotFound, LeaseHeld,
      StaleLease, Unauthenticated, Forbidden, TooLarge, RateLimited, ShuttingDown, Conflict, StorageFull,
      Unavailable, Overloaded, CallTimeout,
    ].map((cls) => [cls.reason, cls]),
  ),
);

const REASON_BY_CODE = Object.freeze(
  Object.fromEntries(Object.values(ERROR_CLASSES).map((cls) => [cls.code, cls.reason])),
);

/**
 * Builds the error for a JSON-RPC `error` member. The reason comes from `data.reason`; without it, from the
 * numeric code (like the Swift client). Unknown reasons give a plain `SessiondError` carrying that reason.
 */
export function errorFromResponse(error) {
  const obj = error !== null && typeof error === 'object' ? error : {};
  const code = Number.isInteger(obj.code) ? obj.code : null;
  const data = obj.data !== null && typeof obj.data === 'object' && !Array.isArray(obj.data) ? { ...obj.data } : {};
  let reason = typeof data.reason === 'string' ? data.reason : undefined;
  if (reason === undefined) {
    reason = (code !== null && REASON_BY_CODE[code]) || 'internal';
    data.reason = reason;
  }
  const message = typeof obj.message === 'string' && obj.message !== '' ? obj.message : reason;
  const Cls = Object.hasOwn(ERROR_CLASSES, reason) ? ERROR_CLASSES[reason] : SessiondError;
  return new Cls(message, { reason, code, data });
}
