import Dispatch
import Foundation
import NIOCore
import SessionServer
import SessionStore

/// One dispatcher over one in-memory store for the whole run: state builds up as a real server's would.
private let dispatcher: Dispatcher = {
    let semaphore = DispatchSemaphore(value: 0)
    let box = Box()
    Task {
        box.dispatcher = try! await Dispatcher(store: SessionDatabase.inMemory())
        semaphore.signal()
    }
    semaphore.wait()
    return box.dispatcher!
}()

private final class Box: @unchecked Sendable {
    var dispatcher: Dispatcher?
    var response: ByteBuffer?
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let payload = ByteBuffer(bytes: UnsafeBufferPointer(start: start, count: count))
    let semaphore = DispatchSemaphore(value: 0)
    let box = Box()
    let dispatcher = dispatcher
    Task {
        box.response = await dispatcher.respond(to: payload)
        semaphore.signal()
    }
    semaphore.wait()
    // Every answer must itself be a JSON-RPC object: a result or an error, never garbage.
    if let response = box.response {
        let object = try? JSONSerialization.jsonObject(with: Data(response.readableBytesView)) as? [String: Any]
        guard let object, object["jsonrpc"] as? String == "2.0", (object["result"] != nil) != (object["error"] != nil)
        else { fatalError("malformed response: \(String(buffer: response))") }
    }
    return 0
}
