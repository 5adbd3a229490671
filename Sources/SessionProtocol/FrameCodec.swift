import NIOCore
import NIOExtras

/// Decodes sessiond frames: a 4-byte big-endian length N, then N bytes of UTF-8 JSON.
///
///     +--------+--------+--------+--------+------------------------------+
///     |     length N (UInt32, big-endian) |  N bytes of UTF-8 JSON  ...  |
///     +--------+--------+--------+--------+------------------------------+
///
/// NIOExtras' `LengthFieldBasedFrameDecoder` does the framing but accepts any length up to `Int32.max`.
/// This wrapper reads each length header first and refuses a zero length or one above `maxFrameBytes`
/// before a single payload byte is buffered, and reports a frame cut short by end of input.
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    public let maxFrameBytes: Int
    private let lengthFieldDecoder = LengthFieldBasedFrameDecoder(lengthFieldBitLength: .fourBytes)
    /// Whether the next bytes are a length header (not the middle of a payload).
    private var atFrameStart = true

    public init(maxFrameBytes: Int) {
        self.maxFrameBytes = maxFrameBytes
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if atFrameStart {
            guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else {
                return .needMoreData
            }
            guard length > 0 else { throw FrameError.emptyFrame }
            guard length <= maxFrameBytes else {
                throw FrameError.frameTooLarge(length: Int(length), maxFrameBytes: maxFrameBytes)
            }
            atFrameStart = false
        }
        let state = try lengthFieldDecoder.decode(context: context, buffer: &buffer)
        if case .continue = state { atFrameStart = true }
        return state
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        let state = try decode(context: context, buffer: &buffer)
        if case .needMoreData = state, !atFrameStart || buffer.readableBytes > 0 {
            throw FrameError.truncatedFrame
        }
        return state
    }
}

/// Why a byte stream is not a valid sequence of frames. The connection cannot recover from any of them.
public enum FrameError: Error, Equatable, CustomStringConvertible {
    case emptyFrame
    case frameTooLarge(length: Int, maxFrameBytes: Int)
    case truncatedFrame

    public var description: String {
        switch self {
        case .emptyFrame: "zero-length frame"
        case .frameTooLarge(let length, let max): "frame of \(length) bytes exceeds the maximum of \(max) bytes"
        case .truncatedFrame: "connection closed in the middle of a frame"
        }
    }

    /// The error as the server reports it before closing the connection.
    public var sessionError: SessionError {
        switch self {
        case .frameTooLarge: SessionError(.tooLarge, description)
        case .emptyFrame, .truncatedFrame: SessionError(.invalidRequest, description)
        }
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// Adds the sessiond frame decoder and encoder (NIOExtras' `LengthFieldPrepender`).
    public func addFrameCodec(maxFrameBytes: Int) throws {
        try addHandler(
            ByteToMessageHandler(FrameDecoder(maxFrameBytes: maxFrameBytes), maximumBufferSize: maxFrameBytes + 4))
        try addHandler(LengthFieldPrepender(lengthFieldBitLength: .fourBytes))
    }
}
