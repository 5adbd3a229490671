import NIOCore
import NIOEmbedded
import Testing

@testable import sessiond_bench

/// The Redis driver's RESP2 reading and writing (`sessiond-bench redis`).
@Suite struct RESPDecoderTests {
    /// An acquire's reply as redis_turn.lua returns it: created, token, fence, action, head, session hash.
    static let acquireReply =
        "*6\r\n:0\r\n$32\r\n0123456789abcdef0123456789abcdef\r\n:7\r\n$6\r\nresume\r\n$4\r\ncli1\r\n"
        + "*4\r\n$2\r\nid\r\n$3\r\nabc\r\n$6\r\nstatus\r\n$6\r\nactive\r\n"

    private func decode(_ chunks: [String]) throws -> [RESPReply] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(RESPReplyDecoder()))
        for chunk in chunks {
            try channel.writeInbound(channel.allocator.buffer(string: chunk))
        }
        var replies: [RESPReply] = []
        while let reply = try channel.readInbound(as: RESPReply.self) { replies.append(reply) }
        _ = try channel.finish()
        return replies
    }

    @Test func aReplyKeepsItsItemsAndSkipsWhatIsNestedInThem() throws {
        let replies = try decode([Self.acquireReply])
        #expect(replies == [
            .array([.integer(0), .bulk("0123456789abcdef0123456789abcdef"), .integer(7), .bulk("resume"), .bulk("cli1"), .skipped])
        ])
    }

    @Test func aReplySplitAtEveryByteDecodesOnceWhole() throws {
        let chunks = Self.acquireReply.map { String($0) }
        #expect(try decode(chunks) == decode([Self.acquireReply]))
        #expect(try decode(chunks).count == 1)
    }

    @Test func severalRepliesInOneReadComeOutInOrder() throws {
        let replies = try decode(["-lease_held bench\r\n+OK\r\n$-1\r\n*-1\r\n:-3\r\n$0\r\n\r\n"])
        #expect(replies == [.error("lease_held bench"), .simple("OK"), .bulk(nil), .array(nil), .integer(-3), .bulk("")])
    }

    @Test func anUnknownTypeByteIsAnError() {
        #expect(throws: RedisDriverError.self) { try decode(["!3\r\nabc\r\n"]) }
        #expect(throws: RedisDriverError.self) { try decode([":twelve\r\n"]) }
    }

    @Test func aCommandIsWrittenAsAnArrayOfBulkStrings() {
        var buffer = ByteBuffer()
        buffer.writeRESPCommand(["EVALSHA", "ab", "1", "héllo", ""])
        #expect(String(buffer: buffer) == "*5\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$6\r\nhéllo\r\n$0\r\n\r\n")
    }
}
