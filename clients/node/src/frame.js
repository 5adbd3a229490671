// Length-prefixed frames: a 4-byte big-endian length N, then N bytes of UTF-8 JSON (docs/PROTOCOL.md "Frames").

import { ProtocolError } from './errors.js';

export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;
const HEADER_BYTES = 4;
const MAX_UINT32 = 0xffffffff;

/** Encodes one message (a JSON-serialisable value) as a frame. */
export function encodeFrame(message) {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  if (body.length === 0 || body.length > MAX_UINT32) {
    throw new RangeError(`frame payload of ${body.length} bytes cannot be framed`);
  }
  const frame = Buffer.allocUnsafe(HEADER_BYTES + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, HEADER_BYTES);
  return frame;
}

/**
 * Splits a byte stream into frame payloads. It refuses a zero length or a length over `maxFrameBytes` as soon
 * as the header arrives, before buffering any of the payload.
 */
export class FrameDecoder {
  constructor(maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {
    this.maxFrameBytes = maxFrameBytes;
    this.chunks = [];
    this.buffered = 0;
    /** Length of the frame being read, once its header has arrived. */
    this.expected = -1;
  }

  /** Feeds bytes; returns the complete payloads (Buffers) they finish. Throws ProtocolError on bad framing. */
  push(chunk) {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const frames = [];
    for (;;) {
      if (this.expected < 0) {
        if (this.buffered < HEADER_BYTES) break;
        const length = this.#peekHeader();
        if (length === 0) throw new ProtocolError('server sent a zero-length frame');
        if (length > this.maxFrameBytes) {
          throw new ProtocolError(
            `server sent a frame of ${length} bytes, over the client's maximum of ${this.maxFrameBytes} bytes`,
            { data: { reason: 'protocol_error', length, maxFrameBytes: this.maxFrameBytes } },
          );
        }
        this.#take(HEADER_BYTES);
        this.expected = length;
      }
      if (this.buffered < this.expected) break;
      frames.push(this.#take(this.expected));
      this.expected = -1;
    }
    return frames;
  }

  /** Whether the stream stopped in the middle of a frame (header or payload). */
  get inFrame() {
    return this.expected >= 0 || this.buffered > 0;
  }

  /** A description of the partial frame, for the truncation error. */
  describePartial() {
    if (this.expected >= 0) return `${this.buffered} of ${this.expected} payload bytes`;
    return `${this.buffered} of ${HEADER_BYTES} header bytes`;
  }

  #peekHeader() {
    const head = this.chunks[0].length >= HEADER_BYTES ? this.chunks[0] : Buffer.concat(this.chunks, HEADER_BYTES);
    return head.readUInt32BE(0);
  }

  #take(n) {
    if (n === 0) return Buffer.alloc(0);
    let out;
    const first = this.chunks[0];
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const chunk = this.chunks[0];
        const want = n - filled;
        if (chunk.length <= want) {
          chunk.copy(out, filled);
          filled += chunk.length;
          this.chunks.shift();
        } else {
          chunk.copy(out, filled, 0, want);
          filled += want;
          this.chunks[0] = chunk.subarray(want);
        }
      }
    }
    this.buffered -= n;
    return out;
  }
}
