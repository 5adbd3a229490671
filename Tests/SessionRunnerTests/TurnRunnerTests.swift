import Foundation
import SessionClient
import SessionProtocol
import SessionTesting
import Testing

@testable import SessionRunner

/// `TurnRunner` against a real sessiond, with the shared stand-in for the CLI
/// (`clients/python/tests/fake_claude.py`): fast, and it fails the way the real CLI does.
@Suite struct TurnRunnerTests {
    static let fakeCLI = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("clients/python/tests/fake_claude.py").path

    struct Machine {
        var home: URL
        var cwd: URL

        init() throws {
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("runner-\(UUID().uuidString)")
            home = root.appendingPathComponent("home")
            cwd = root.appendingPathComponent("work")
            try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: cwd, withIntermediateDirectories: true)
        }

        func options(key: String) -> TurnRunner.Options {
            var options = TurnRunner.Options(key: key, cwd: cwd.path, holder: "tests")
            options.environment = ["HOME": home.path, "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"]
            options.wait = .seconds(5)
            return options
        }
    }

    func turn(_ server: TestServer, _ machine: Machine, key: String, prompt: String, configure: (inout TurnRunner.Options) -> Void = { _ in })
        async throws -> TurnRunner.Report
    {
        var options = machine.options(key: key)
        configure(&options)
        let client = server.client("runner")
        defer { Task { await client.close() } }
        return try await TurnRunner(client: client, options: options)
            .run([Self.fakeCLI, "-p", prompt, "--output-format", "json"], standardInput: Data())
    }

    @Test func turnsResumeAndUploadOnlyNewTranscriptBytes() async throws {
        try await withTestServer { server in
            let machine = try Machine()
            let first = try await turn(server, machine, key: "r:resume", prompt: "one")
            #expect(first.exitCode == 0)
            #expect(first.decision == .fresh(.new))
            #expect(first.transcriptBytesUploaded == first.transcriptSize)
            let second = try await turn(server, machine, key: "r:resume", prompt: "two")
            #expect(second.decision == .resume(first.cliSessionId!))
            #expect(second.cliSessionId == first.cliSessionId)
            #expect(second.transcriptBytesUploaded == second.transcriptSize - first.transcriptSize)
            let session = try await server.client().session(key: "r:resume")
            #expect(session.turnCount == 2)
            #expect(session.transcriptBytes == second.transcriptSize)
            #expect(session.lease == nil)
        }
    }

    @Test func aNewMachineGetsTheTranscriptBack() async throws {
        try await withTestServer { server in
            let first = try await turn(server, try Machine(), key: "r:move", prompt: "one")
            let other = try Machine()
            let second = try await turn(server, other, key: "r:move", prompt: "two")
            #expect(second.decision == .resume(first.cliSessionId!))
            #expect(second.exitCode == 0)
            #expect(second.cliSessionId == first.cliSessionId)
        }
    }

    @Test func aFailedResumeIsRecordedAndFallsBackToARecap() async throws {
        try await withTestServer { server in
            let machine = try Machine()
            _ = try await turn(server, machine, key: "r:recap", prompt: "remember the plan") { $0.recordTranscript = false }
            try FileManager.default.removeItem(at: machine.home.appendingPathComponent(".claude"))
            let report = try await turn(server, machine, key: "r:recap", prompt: "go on") { $0.recordTranscript = false }
            #expect(report.exitCode == 0)
            #expect(report.recapUsed)
            let client = server.client()
            let session = try await client.session(key: "r:recap")
            #expect(session.totalFailures == 1)
            #expect(try await client.history(sessionId: session.id).map(\.reason) == [.created, .freshAfterFailure])
            // The stored prompt is the caller's, without the recap.
            let messages = try await client.messages(.init(sessionId: session.id)).messages
            #expect(messages.map(\.content).contains("go on"))
        }
    }

    @Test func theFailPolicyStopsAndReleases() async throws {
        try await withTestServer { server in
            let machine = try Machine()
            _ = try await turn(server, machine, key: "r:fail", prompt: "a") { $0.recordTranscript = false }
            try FileManager.default.removeItem(at: machine.home.appendingPathComponent(".claude"))
            let report = try await turn(server, machine, key: "r:fail", prompt: "b") {
                $0.recordTranscript = false
                $0.onResumeFailure = .fail
            }
            #expect(report.exitCode == 1)
            let session = try await server.client().session(key: "r:fail")
            #expect(session.consecutiveFailures == 1)
            #expect(session.lease == nil)
        }
    }

    @Test func aCLIThatCannotStartReleasesTheLease() async throws {
        try await withTestServer { server in
            let machine = try Machine()
            let client = server.client("runner")
            await #expect(throws: (any Error).self) {
                _ = try await TurnRunner(client: client, options: machine.options(key: "r:missing"))
                    .run(["/nonexistent/claude", "-p", "x"], standardInput: Data())
            }
            #expect(try await client.session(key: "r:missing").lease == nil)
            await client.close()
        }
    }
}
