import Foundation
import NIOCore
import NIOEmbedded
import NIOFoundationCompat
import SessionProtocol

/// Every method's params type: each decoded frame is tried against all of them.
private let paramDecoders: [@Sendable (RPCRequestEnvelope) throws -> Void] = {
    func params<M: RPCMethod>(_: M.Type) -> @Sendable (RPCRequestEnvelope) throws -> Void {
        { _ = try $0.decodeParams(M.Params.self) }
    }
    return [
        params(Hello.self), params(Health.self), params(SessionAcquire.self), params(SessionComplete.self),
        params(SessionRenew.self), params(SessionRelease.self), params(SessionTouch.self), params(SessionGet.self),
        params(SessionList.self), params(SessionUpdate.self), params(SessionDelete.self), params(SessionFork.self),
        params(SessionHistory.self), params(MessagesAppend.self), params(MessagesList.self),
        params(TranscriptAppend.self), params(TranscriptRead.self), params(AuditList.self), params(RegistryStats.self),
        params(TokensCreate.self), params(TokensList.self), params(TokensRevoke.self),
    ]
}()

private let decoder = WireJSON.makeDecoder()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let channel = EmbeddedChannel()
    try! channel.pipeline.syncOperations.addFrameCodec(maxFrameBytes: 64 * 1024)
    var input = channel.allocator.buffer(capacity: count)
    input.writeBytes(UnsafeBufferPointer(start: start, count: count))
    do {
        try channel.writeInbound(input)
        _ = try channel.finish()
    } catch is FrameError {
    } catch is ByteToMessageDecoderError.PayloadTooLargeError {
    } catch {
        fatalError("unexpected decoder error: \(error)")
    }
    while let frame = try? channel.readInbound(as: ByteBuffer.self) {
        guard frame.readableBytes > 0 else { fatalError("the decoder produced an empty frame") }
        if let request = try? RPCRequestEnvelope(parsing: frame) {
            _ = request.method
            for decode in paramDecoders { try? decode(request) }
        }
        _ = try? decoder.decode(RPCResponseHead.self, from: frame)
        // Any JSON through ParamsDecoder: objects, arrays, escapes and numbers of every shape.
        _ = try? frame.withUnsafeReadableBytes { try ParamsDecoder.decode(JSONValue.self, from: $0) }
    }
    return 0
}
