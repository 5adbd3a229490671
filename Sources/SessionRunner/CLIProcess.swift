@preconcurrency import Dispatch
import Foundation
import Subprocess
import SystemPackage
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Runs the CLI as a child process: stdin from bytes the wrapper read from its own stdin (so a turn can be
/// run again), stdout captured and, when asked, passed through as it arrives, stderr passed through with
/// its tail kept. SIGINT and SIGTERM sent
/// to the wrapper are forwarded to the child, so the wrapper outlives it and can record the turn.
struct CLIProcess {
    var arguments: [String]
    var input: Data
    var passThroughStdout: Bool
    var environment: [String: String]
    var workingDirectory: String

    private static let stderrTail = 64 * 1024

    func run() async throws -> CLIRun {
        let executable: Executable =
            arguments[0].contains("/") ? .path(FilePath(arguments[0])) : .name(arguments[0])
        let interrupted = Atomic<Bool>(false)
        let result = try await Subprocess.run(
            executable, arguments: Arguments(Array(arguments.dropFirst())),
            environment: .custom(Dictionary(uniqueKeysWithValues: environment.map { (Environment.Key(rawValue: $0.key)!, $0.value) })),
            workingDirectory: FilePath(workingDirectory),
            input: .data(input), output: .sequence, error: .sequence
        ) { execution in
            let forwarding = SignalForwarding { signal in
                interrupted.store(true, ordering: .relaxed)
                try? execution.send(signal: Signal(rawValue: signal))
            }
            defer { forwarding.cancel() }
            async let stdout: Data = {
                var collected = Data()
                for try await buffer in execution.standardOutput {
                    buffer.withUnsafeBytes { bytes in
                        collected.append(contentsOf: bytes)
                        if passThroughStdout { FileHandle.standardOutput.write(Data(bytes)) }
                    }
                }
                return collected
            }()
            async let stderr: Data = {
                var tail = Data()
                for try await buffer in execution.standardError {
                    buffer.withUnsafeBytes { bytes in
                        FileHandle.standardError.write(Data(bytes))
                        tail.append(contentsOf: bytes)
                        if tail.count > Self.stderrTail { tail.removeFirst(tail.count - Self.stderrTail) }
                    }
                }
                return tail
            }()
            return try await (stdout, stderr)
        }
        let code: Int32
        switch result.terminationStatus {
        case .exited(let status): code = status
        case .signaled(let signal): code = 128 + signal
        }
        let (stdout, stderr) = result.closureResult
        return CLIRun(
            exitCode: code, stdout: stdout, stderr: String(decoding: stderr, as: UTF8.self),
            interrupted: interrupted.load(ordering: .relaxed))
    }
}

/// Forwards SIGINT and SIGTERM to a handler instead of ending the process, until cancelled.
final class SignalForwarding: @unchecked Sendable {
    private let sources: [any DispatchSourceSignal]

    init(_ handler: @escaping @Sendable (Int32) -> Void) {
        sources = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { handler(number) }
            source.resume()
            return source
        }
    }

    func cancel() {
        for source in sources { source.cancel() }
    }
}

/// The wrapper's own stdin, read to the end unless it is a terminal (then the CLI gets none).
public func readStandardInput() -> Data {
    if isatty(STDIN_FILENO) != 0 { return Data() }
    return FileHandle.standardInput.readDataToEndOfFile()
}
