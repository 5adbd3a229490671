// sessiond-client: the Node.js client for sessiond (docs/PROTOCOL.md).

export {
  Client,
  CLIENT_VERSION,
  DEFAULT_CLIENT_NAME,
  DEFAULT_TIMEOUT_MS,
  PROTOCOL_VERSION,
  leaseProof,
} from './src/client.js';
export { DEFAULT_ADDR, formatAddress, parseAddress } from './src/address.js';
export { DEFAULT_MAX_FRAME_BYTES, FrameDecoder, encodeFrame } from './src/frame.js';
export {
  CallTimeout,
  Conflict,
  ConnectionClosed,
  ERROR_CLASSES,
  Forbidden,
  InternalError,
  InvalidParams,
  InvalidRequest,
  LeaseHeld,
  MethodNotFound,
  NotFound,
  Overloaded,
  ParseError,
  ProtocolError,
  RateLimited,
  SessiondError,
  ShuttingDown,
  StaleLease,
  StorageFull,
  TooLarge,
  Unauthenticated,
  Unavailable,
  errorFromResponse,
} from './src/errors.js';
export { DEFAULT_WAIT_MS, LeaseKeeper, Turn, shortReason, turn } from './src/turn.js';
export {
  NO_CONVERSATION_MARKER,
  RECAP_FOOTER,
  RECAP_HEADER,
  RECAP_MAX_CHARS,
  buildRecap,
  checkArgs,
  extractPrompt,
  findOutputFormat,
  parseCliOutput,
  runClaude,
  transcriptPath,
} from './src/run.js';
