// Type definitions for sessiond-client (hand-written; the wire contract is docs/PROTOCOL.md).

/// <reference types="node" />

// ---------------------------------------------------------------------------------------------------------
// Wire objects
// ---------------------------------------------------------------------------------------------------------

/** ISO-8601 UTC string with milliseconds, e.g. `2026-11-21T08:46:19.123Z`. */
export type ISODate = string;
export type JSONValue = string | number | boolean | null | JSONValue[] | { [key: string]: JSONValue };

export type SessionStatus = 'active' | 'expired' | 'non_resumable' | 'closed';
export type FreshReason = 'new' | 'expired' | 'non_resumable' | 'stale' | 'resume_failed';
export type ChainReason = 'created' | 'forked' | 'changed_by_cli' | 'fresh_after_failure' | 'fresh_after_expiry';
export type MessageRole = 'user' | 'assistant' | 'system' | 'tool';
export type TurnOutcome = 'ok' | 'resume_failed' | 'error';

export interface ResumeDecision {
  action: 'resume' | 'fresh';
  /** The CLI session id to resume (with `resume`). */
  cliSessionId?: string;
  /** Why the turn starts fresh (with `fresh`). */
  reason?: FreshReason;
  /** Resume as a fork (`--fork-session`). */
  fork?: boolean;
}

export interface Lease {
  token: string;
  fence: number;
  holder: string;
  expiresAt: ISODate;
}

/** What a write carries to prove it holds the lease. A full `Lease` is accepted too (reduced to this). */
export interface LeaseProof {
  token: string;
  fence: number;
}

export interface LeaseState {
  holder: string;
  fence: number;
  expiresAt: ISODate;
}

export interface Session {
  id: string;
  tenant: string;
  key: string;
  tool: string;
  cwd?: string;
  cliSessionId?: string;
  status: SessionStatus;
  createdAt: ISODate;
  lastUsedAt: ISODate;
  expiresAt: ISODate;
  ttlSeconds: number;
  turnCount: number;
  resumeAttempts: number;
  resumeSuccesses: number;
  consecutiveFailures: number;
  totalFailures: number;
  lastFailureReason?: string;
  costUsd: number;
  inputTokens: number;
  outputTokens: number;
  messageCount: number;
  transcriptBytes: number;
  metadata: { [key: string]: JSONValue };
  labels: string[];
  parentId?: string;
  lease?: LeaseState;
}

export interface ChainLink {
  seq: number;
  cliSessionId: string;
  reason: ChainReason;
  at: ISODate;
}

export interface NewMessage {
  role: MessageRole;
  content: string;
  inputTokens?: number;
  outputTokens?: number;
}

export interface Message extends NewMessage {
  seq: number;
  at: ISODate;
}

export interface TranscriptState {
  cliSessionId: string;
  size: number;
}

export interface AuditEntry {
  id: number;
  at: ISODate;
  tenant: string;
  actor: string;
  sessionId?: string;
  key?: string;
  action: string;
  outcome: 'ok' | 'refused' | 'failed' | string;
  detail: { [key: string]: JSONValue };
}

export interface TokenInfo {
  id: string;
  tenant: string;
  admin: boolean;
  label?: string;
  createdAt: ISODate;
  revokedAt?: ISODate;
}

// ---------------------------------------------------------------------------------------------------------
// Method params and results
// ---------------------------------------------------------------------------------------------------------

export interface HelloParams {
  client?: { name: string; version?: string };
  protocolVersion?: number;
  /** Defaults to the client's token (option `token`, else `SESSIOND_TOKEN`); `null` sends none. */
  token?: string | null;
}
export interface HelloResult {
  server: { name: string; version?: string };
  protocolVersion: number;
  tenant: string;
  admin: boolean;
  authRequired: boolean;
  maxFrameBytes: number;
  maxInFlight: number;
}
export interface HealthResult {
  status: 'ok' | string;
  version: string;
  uptimeSeconds: number;
  connections: number;
  schemaVersion: string | number;
}

export interface AcquireParams {
  key: string;
  tool?: string;
  cwd?: string;
  holder?: string;
  ttlSeconds?: number;
  leaseSeconds?: number;
  waitMs?: number;
  metadata?: { [key: string]: JSONValue };
  labels?: string[];
}
export interface AcquireResult {
  session: Session;
  created: boolean;
  lease: Lease;
  decision: ResumeDecision;
  transcript?: TranscriptState;
}

export interface CompleteParams {
  sessionId: string;
  lease: LeaseProof | Lease;
  outcome: TurnOutcome;
  cliSessionId?: string;
  reason?: string;
  costUsd?: number;
  inputTokens?: number;
  outputTokens?: number;
  messages?: NewMessage[];
  keepLease?: boolean;
}
export interface CompleteResult {
  session: Session;
  chainExtended: boolean;
  lease?: Lease;
  decision?: ResumeDecision;
}

export interface RenewParams {
  sessionId: string;
  lease: LeaseProof | Lease;
  leaseSeconds?: number;
}
export interface ReleaseParams {
  sessionId: string;
  lease: LeaseProof | Lease;
}
export type SessionSelector = { sessionId: string; key?: undefined } | { key: string; sessionId?: undefined };
export type TouchParams = SessionSelector & { ttlSeconds?: number };
export interface ListParams {
  status?: SessionStatus;
  tool?: string;
  keyPrefix?: string;
  label?: string;
  limit?: number;
  cursor?: string;
}
export interface UpdateParams {
  sessionId: string;
  metadata?: { [key: string]: JSONValue };
  labels?: string[];
  ttlSeconds?: number;
  status?: 'closed' | 'active';
}
export interface MessagesAppendParams {
  sessionId: string;
  lease?: LeaseProof | Lease;
  messages: NewMessage[];
}
export interface MessagesListParams {
  sessionId: string;
  afterSeq?: number;
  tail?: number;
  limit?: number;
}
export interface TranscriptAppendParams {
  sessionId: string;
  lease: LeaseProof | Lease;
  cliSessionId: string;
  offset: number;
  /** The bytes; sent as base64. A string is encoded as UTF-8. */
  data: Buffer | Uint8Array | ArrayBuffer | string;
}
export interface TranscriptReadParams {
  sessionId: string;
  cliSessionId?: string;
  offset?: number;
  limit?: number;
}
export interface TranscriptReadResult {
  cliSessionId: string;
  offset: number;
  /** Decoded from base64. */
  data: Buffer;
  size: number;
  eof: boolean;
}
export interface AuditListParams {
  sessionId?: string;
  action?: string;
  since?: ISODate | Date;
  until?: ISODate | Date;
  limit?: number;
  cursor?: string;
}
export interface StatsResult {
  sessions: number;
  byStatus: { [status: string]: number };
  turns: number;
  resumeAttempts: number;
  resumeSuccesses: number;
  resumeFailures: number;
  resumeSuccessRate?: number | null;
  freshStarts: number;
  topFailureReasons: { reason: string; count: number }[];
  sessionAge: { le: string; count: number }[];
  databaseBytes: number;
  walBytes: number;
}

// ---------------------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------------------

export interface CallOptions {
  /** Overrides the client's timeout for this call (ms). */
  timeoutMs?: number;
  /** Abandons the call (rejects with the signal's reason); a late response is ignored. */
  signal?: AbortSignal;
}

export type Address = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

export interface ClientOptions {
  /** `HOST:PORT`, `tcp://HOST:PORT`, `unix:/path`, `unix:///path`, `/path`, or a parsed address.
   *  Default: `SESSIOND_ADDR`, else `127.0.0.1:7420`. */
  addr?: string | Address | { host: string; port: number } | { path: string };
  /** Default: `SESSIOND_TOKEN`. */
  token?: string;
  /** Sent in `hello` (default `sessiond-client-node`). */
  clientName?: string;
  clientVersion?: string;
  /** Per-call timeout, default 30 000 ms. `acquire` adds its `waitMs` unless a call timeout is given. */
  timeoutMs?: number;
  /** Timeout for connecting and the `hello` (default: `timeoutMs`). */
  connectTimeoutMs?: number;
  /** The largest frame accepted from the server (default 16 MiB). */
  maxFrameBytes?: number;
  /** Send `hello` on connect (default true). */
  hello?: boolean;
  /** Called for server notifications (reserved; ignored by default). */
  onNotification?: (method: string, params: unknown) => void;
  /** Environment to read `SESSIOND_ADDR` / `SESSIOND_TOKEN` from (default `process.env`). */
  env?: NodeJS.ProcessEnv | Record<string, string | undefined>;
}

export declare class Client {
  constructor(opts?: ClientOptions);
  /** Connects and sends `hello` (unless `hello: false`). */
  static connect(opts?: ClientOptions): Promise<Client>;

  readonly address: Address;
  readonly addressText: string;
  readonly token: string | undefined;
  readonly clientName: string;
  readonly timeoutMs: number;
  readonly maxFrameBytes: number;
  /** The `hello` result once connected (null with `hello: false`). */
  serverInfo: HelloResult | null;
  readonly isOpen: boolean;
  readonly pendingCount: number;

  /** Opens the connection (idempotent; a first call also opens it). */
  open(): Promise<void>;
  /** Closes the connection; pending calls reject with ConnectionClosed. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
  unref(): this;
  ref(): this;

  /** Any method by name. Resolves to the `result` member; rejects with a SessiondError subclass. */
  call<T = any>(method: string, params?: object, opts?: CallOptions): Promise<T>;

  hello(params?: HelloParams, opts?: CallOptions): Promise<HelloResult>;
  health(opts?: CallOptions): Promise<HealthResult>;
  acquire(params: AcquireParams, opts?: CallOptions): Promise<AcquireResult>;
  complete(params: CompleteParams, opts?: CallOptions): Promise<CompleteResult>;
  renew(params: RenewParams, opts?: CallOptions): Promise<{ lease: Lease }>;
  release(params: ReleaseParams, opts?: CallOptions): Promise<{ released: boolean }>;
  touch(params: TouchParams, opts?: CallOptions): Promise<{ session: Session }>;
  get(params: SessionSelector, opts?: CallOptions): Promise<{ session: Session }>;
  list(params?: ListParams, opts?: CallOptions): Promise<{ sessions: Session[]; nextCursor?: string }>;
  update(params: UpdateParams, opts?: CallOptions): Promise<{ session: Session }>;
  delete(params: { sessionId: string; force?: boolean }, opts?: CallOptions): Promise<{ deleted: boolean }>;
  fork(params: { sessionId: string; key: string }, opts?: CallOptions): Promise<{ session: Session }>;
  history(params: { sessionId: string }, opts?: CallOptions): Promise<{ chain: ChainLink[] }>;
  messagesAppend(params: MessagesAppendParams, opts?: CallOptions): Promise<{ firstSeq: number; lastSeq: number }>;
  messagesList(params: MessagesListParams, opts?: CallOptions): Promise<{ messages: Message[]; nextAfterSeq?: number }>;
  transcriptAppend(params: TranscriptAppendParams, opts?: CallOptions): Promise<{ size: number; appended: number }>;
  transcriptRead(params: TranscriptReadParams, opts?: CallOptions): Promise<TranscriptReadResult>;
  auditList(params?: AuditListParams, opts?: CallOptions): Promise<{ entries: AuditEntry[]; nextCursor?: string }>;
  stats(opts?: CallOptions): Promise<StatsResult>;
  tokensCreate(params: { tenant: string; admin?: boolean; label?: string }, opts?: CallOptions): Promise<{ token: string; info: TokenInfo }>;
  tokensList(opts?: CallOptions): Promise<{ tokens: TokenInfo[] }>;
  tokensRevoke(params: { id: string }, opts?: CallOptions): Promise<{ revoked: boolean }>;
}

export declare const CLIENT_VERSION: string;
export declare const PROTOCOL_VERSION: number;
export declare const DEFAULT_CLIENT_NAME: string;
export declare const DEFAULT_TIMEOUT_MS: number;
export declare const DEFAULT_ADDR: string;
export declare const DEFAULT_MAX_FRAME_BYTES: number;
export declare function leaseProof(lease: LeaseProof | Lease): LeaseProof;
export declare function leaseProof(lease: null | undefined): null | undefined;
export declare function parseAddress(addr: string): Address;
export declare function formatAddress(addr: Address): string;
export declare function encodeFrame(message: unknown): Buffer;
export declare class FrameDecoder {
  constructor(maxFrameBytes?: number);
  readonly maxFrameBytes: number;
  /** Feeds bytes; returns the payloads they complete. Throws ProtocolError on a zero or oversized length. */
  push(chunk: Buffer): Buffer[];
  readonly inFrame: boolean;
  describePartial(): string;
}

// ---------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------

export type ErrorReason =
  | 'parse_error' | 'invalid_request' | 'method_not_found' | 'invalid_params' | 'internal' | 'not_found'
  | 'lease_held' | 'stale_lease' | 'unauthenticated' | 'forbidden' | 'too_large' | 'rate_limited'
  | 'shutting_down' | 'conflict' | 'storage_full' | 'unavailable' | 'overloaded' | 'timeout'
  | 'connection_closed' | 'protocol_error';

export declare class SessiondError extends Error {
  constructor(message: string, opts?: { reason?: string; code?: number | null; data?: object; cause?: unknown });
  /** The stable error type (`data.reason` on the wire). Branch on this, never on `message`. */
  reason: ErrorReason | string;
  /** The JSON-RPC code (null for client-side connection errors). */
  code: number | null;
  /** `error.data` as sent (always has `reason`; e.g. `holder`/`expiresAt` for lease_held, `size` for conflict). */
  data: { reason: string; [key: string]: any };
  static readonly reason: string | undefined;
  static readonly code: number | null | undefined;
}
export declare class ParseError extends SessiondError {}
export declare class InvalidRequest extends SessiondError {}
export declare class MethodNotFound extends SessiondError {}
export declare class InvalidParams extends SessiondError {}
export declare class InternalError extends SessiondError {}
export declare class NotFound extends SessiondError {}
export declare class LeaseHeld extends SessiondError {}
export declare class StaleLease extends SessiondError {}
export declare class Unauthenticated extends SessiondError {}
export declare class Forbidden extends SessiondError {}
export declare class TooLarge extends SessiondError {}
export declare class RateLimited extends SessiondError {}
export declare class ShuttingDown extends SessiondError {}
export declare class Conflict extends SessiondError {}
export declare class StorageFull extends SessiondError {}
export declare class Unavailable extends SessiondError {}
export declare class Overloaded extends SessiondError {}
/** Client side: no response within the call's timeout (reason `timeout`, code -32013). */
export declare class CallTimeout extends SessiondError {}
/** Client side: the connection is closed or could not be opened (reason `connection_closed`). */
export declare class ConnectionClosed extends SessiondError {}
/** Client side: the server broke the protocol (bad frame, bad JSON, unknown id; reason `protocol_error`). */
export declare class ProtocolError extends SessiondError {}
export declare const ERROR_CLASSES: { readonly [reason: string]: typeof SessiondError };
export declare function errorFromResponse(error: { code?: number; message?: string; data?: object }): SessiondError;

// ---------------------------------------------------------------------------------------------------------
// turn()
// ---------------------------------------------------------------------------------------------------------

export interface TurnOptions extends Omit<AcquireParams, 'key'> {
  /** How long to wait for a held lease (default 600 000 ms). */
  waitMs?: number;
  /** Renew the lease every third of its duration while the body runs (default true). */
  renew?: boolean;
  /** Told about failed renewals. */
  onRenewError?: (err: unknown) => void;
  /** Timeout of the acquire call (default: client timeout + waitMs). */
  timeoutMs?: number;
}

export interface TurnOk {
  cliSessionId: string;
  costUsd?: number;
  inputTokens?: number;
  outputTokens?: number;
  messages?: NewMessage[];
}

export declare class Turn {
  readonly acquired: AcquireResult;
  readonly session: Session;
  readonly sessionId: string;
  readonly decision: ResumeDecision;
  readonly created: boolean;
  readonly transcript: TranscriptState | undefined;
  /** The current lease (updated by renewals). */
  readonly lease: Lease;
  /** Whether to run the CLI with `--resume <cliSessionId>`. */
  readonly resume: boolean;
  /** The id to resume, or null for a fresh start. */
  readonly cliSessionId: string | null;
  /** Whether to add `--fork-session`. */
  readonly fork: boolean;
  /** Aborted when the lease is lost (a renewal answered stale_lease / not_found, or the connection closed). */
  readonly signal: AbortSignal;
  renew(): Promise<void>;
  ok(result: TurnOk): void;
  resumeFailed(reason?: string): void;
  error(reason?: string): void;
}

export interface TurnResult<T> {
  /** What the body returned. */
  value: T;
  outcome: TurnOutcome;
  completion: CompleteResult;
  acquired: AcquireResult;
}

export declare function turn<T>(client: Client, key: string, opts: TurnOptions, body: (t: Turn) => T | Promise<T>): Promise<TurnResult<T>>;
export declare function turn<T>(client: Client, key: string, body: (t: Turn) => T | Promise<T>): Promise<TurnResult<T>>;
export declare const DEFAULT_WAIT_MS: number;
export declare function shortReason(err: unknown, prefix?: string): string;
export declare class LeaseKeeper {
  constructor(client: Client, sessionId: string, lease: Lease, opts?: { leaseSeconds?: number; onError?: (err: unknown) => void });
  lease: Lease;
  lost: unknown;
  readonly signal: AbortSignal;
  intervalMs(): number;
  start(): this;
  setLease(lease: Lease): void;
  renew(): Promise<void>;
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------------
// runClaude()
// ---------------------------------------------------------------------------------------------------------

export interface RunClaudeOptions {
  /** Use this connection (not closed afterwards). Otherwise one is opened from addr/token and closed. */
  client?: Client;
  addr?: string;
  token?: string;
  clientName?: string;
  /** Call timeout for a connection runClaude opens. */
  timeoutMs?: number;
  /** Session key. Default: `SESSIOND_KEY`, else `cwd:<absolute cwd>`. */
  key?: string;
  /** Working directory of the CLI (default `process.cwd()`). */
  cwd?: string;
  /** Environment of the CLI (default `process.env`); also where HOME / CLAUDE_CONFIG_DIR / SESSIOND_* are read. */
  env?: NodeJS.ProcessEnv | Record<string, string | undefined>;
  /** Seconds to wait for a held lease (default 600). */
  wait?: number;
  leaseSeconds?: number;
  ttlSeconds?: number;
  metadata?: { [key: string]: JSONValue };
  labels?: string[];
  /** Lease holder (default `"<client name>@<hostname> pid <pid>"`). */
  holder?: string;
  /** Fork the session first and run on the child (key `<key>:fork:<8 hex>` or `forkKey`). */
  fork?: boolean;
  forkKey?: string;
  /** After `No conversation found`: `recap` (default), `fresh`, or `fail`. */
  onResumeFailure?: 'recap' | 'fresh' | 'fail';
  /** Record the prompt and the answer as messages (default true). */
  history?: boolean;
  /** Text for the CLI's stdin (also the prompt when the args have none). */
  input?: string | Buffer;
  /** With `--output-format stream-json`: each stdout line, as it arrives. */
  onLine?: (line: string) => void;
  /** Each chunk of the CLI's stderr, as it arrives. */
  onStderr?: (chunk: Buffer) => void;
  /** Where to report what could not be recorded (default: a line on process.stderr). */
  log?: (line: string) => void;
}

export interface RunClaudeResult {
  /** The CLI's exit code (128 + signal number when killed; 127 when it could not be started). */
  exitCode: number;
  /** The result text of the CLI's result event, or null. */
  result: string | null;
  /** The CLI session id, only for a successful turn (never taken from an error result). */
  sessionId: string | null;
  /** The result event (`{type: "result", ...}`), or null. */
  json: { [key: string]: any } | null;
  stdout: string;
  stderr: string;
  /** The session key the turn ran under (the child's, with `fork`). */
  key: string;
  /** The registry's session id. */
  registrySessionId: string;
  /** The registry's decision at acquire. */
  decision: ResumeDecision;
  /** How a failed resume was recovered (`recap` / `fresh`), else null. */
  recovered: 'recap' | 'fresh' | null;
}

export declare function runClaude(args: string[], opts?: RunClaudeOptions): Promise<RunClaudeResult>;
export declare const NO_CONVERSATION_MARKER: string;
export declare const RECAP_HEADER: string;
export declare const RECAP_FOOTER: string;
export declare const RECAP_MAX_CHARS: number;
export declare function transcriptPath(cliSessionId: string, opts?: { cwd?: string; env?: Record<string, string | undefined> }): string;
export declare function checkArgs(args: string[]): void;
export declare function findOutputFormat(args: string[]): { format: string | null; index: number; inline: boolean };
export declare function extractPrompt(args: string[], input?: string | Buffer): { prompt: string | null; index: number };
export declare function buildRecap(messages: { role: string; content: string }[], maxChars?: number): string;
export declare function parseCliOutput(stdout: string, format?: 'json' | 'stream-json'): { [key: string]: any } | null;
