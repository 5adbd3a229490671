import Foundation
import SessionProtocol
import Testing

@testable import SessionRunner

@Suite struct ClaudeAdapterTests {
    let adapter = ClaudeCodeAdapter()

    @Test func thePromptIsFoundWhereTheCLIFindsIt() throws {
        #expect(try adapter.plan(["claude", "-p", "hi there"]).prompt == "hi there")
        #expect(try adapter.plan(["claude", "--model", "opus", "-p", "--verbose", "hi"]).prompt == "hi")
        #expect(try adapter.plan(["claude", "-p", "--add-dir", "a", "b", "--", "the prompt"]).prompt == "the prompt")
        #expect(try adapter.plan(["claude", "--allowedTools", "Bash", "Edit", "-p"]).prompt == nil)
        #expect(try adapter.plan(["claude", "--debug", "api", "-p", "x"]).prompt == "x")
        #expect(try adapter.plan(["claude", "-p"]).prompt == nil)
        #expect(try adapter.plan(["claude", "--model=opus", "ask", "-p"]).prompt == "ask")
    }

    @Test func textOutputIsTurnedIntoJSONAndOtherFormatsPassThrough() throws {
        let text = try adapter.plan(["claude", "-p", "hi", "--output-format", "text"])
        #expect(text.outputMode == .text)
        #expect(adapter.arguments(for: text, resume: nil, fork: false, prompt: nil) == ["claude", "--output-format", "json", "-p", "hi"])
        let json = try adapter.plan(["claude", "--output-format=json", "-p", "hi"])
        #expect(json.outputMode == .json)
        #expect(adapter.arguments(for: json, resume: "abc", fork: true, prompt: nil)
            == ["claude", "--resume", "abc", "--fork-session", "--output-format", "json", "-p", "hi"])
        let stream = try adapter.plan(["claude", "-p", "hi", "--output-format", "stream-json", "--verbose"])
        #expect(stream.outputMode == .streamJSON)
        #expect(adapter.arguments(for: stream, resume: "abc", fork: false, prompt: "recap + hi")
            == ["claude", "--resume", "abc", "-p", "recap + hi", "--output-format", "stream-json", "--verbose"])
    }

    @Test func flagsTheRegistryOwnsAreRefused() {
        for flag in ["--resume", "-r", "--continue", "-c", "--session-id", "--resume=abc"] {
            #expect(throws: RunnerError.self) { try adapter.plan(["claude", flag, "x", "-p", "hi"]) }
        }
    }

    @Test func resultsAreReadFromObjectsArraysAndStreams() {
        let object = Data(#"{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"s1","total_cost_usd":0.5,"usage":{"input_tokens":3,"output_tokens":4}}"#.utf8)
        let parsed = ClaudeCodeAdapter.parseResult(object, streaming: false)
        #expect(parsed == CLIResult(cliSessionId: "s1", text: "ok", isError: false, subtype: "success", totalCostUsd: 0.5, inputTokens: 3, outputTokens: 4))
        let array = Data(#"[{"type":"system","session_id":"x"},{"type":"result","is_error":false,"result":"r","session_id":"s2"}]"#.utf8)
        #expect(ClaudeCodeAdapter.parseResult(array, streaming: false)?.cliSessionId == "s2")
        let stream = Data("{\"type\":\"system\"}\n{\"type\":\"assistant\"}\n{\"type\":\"result\",\"is_error\":false,\"session_id\":\"s3\"}\n".utf8)
        #expect(ClaudeCodeAdapter.parseResult(stream, streaming: true)?.cliSessionId == "s3")
        #expect(ClaudeCodeAdapter.parseResult(Data("Execution error".utf8), streaming: false) == nil)
    }

    @Test func isErrorIsAFailureEvenWhenTheSubtypeSaysSuccess() throws {
        let plan = try adapter.plan(["claude", "-p", "hi"])
        let run = CLIRun(
            exitCode: 0, stdout: Data(#"{"type":"result","subtype":"success","is_error":true,"result":"boom","session_id":"s1"}"#.utf8),
            stderr: "", interrupted: false)
        #expect(adapter.outcome(of: run, plan: plan, resumed: false) == .failed(reason: "is_error (success): boom", result: ClaudeCodeAdapter.parseResult(run.stdout, streaming: false)))
    }

    @Test func aMissingConversationIsAResumeFailureOnlyWhenResuming() throws {
        let plan = try adapter.plan(["claude", "-p", "hi"])
        let run = CLIRun(exitCode: 1, stdout: Data(), stderr: "No conversation found with session ID: abc\n", interrupted: false)
        #expect(adapter.outcome(of: run, plan: plan, resumed: true) == .resumeFailed(reason: "no_conversation_found"))
        #expect(adapter.outcome(of: run, plan: plan, resumed: false)
            == .failed(reason: "exit_code_1: No conversation found with session ID: abc", result: nil))
        let killed = CLIRun(exitCode: 137, stdout: Data(), stderr: "", interrupted: false)
        #expect(adapter.outcome(of: killed, plan: plan, resumed: false) == .failed(reason: "killed_by_SIGKILL", result: nil))
    }

    @Test func projectFoldersMatchTheCLI() {
        #expect(ClaudeCodeAdapter.projectFolder(for: "/work/my_app.v2") == "-work-my-app-v2")
        // One '-' per UTF-16 unit, as the CLI's JavaScript does it.
        #expect(ClaudeCodeAdapter.projectFolder(for: "/tmp/ü😀-x") == "-tmp-----x")
        // Long paths are cut to 200 characters plus the CLI's base-36 hash (checked against its code).
        let long = "/a/" + String(repeating: "x", count: 250)
        #expect(ClaudeCodeAdapter.projectFolder(for: long) == String(("-a-" + String(repeating: "x", count: 250)).prefix(200)) + "-oej0v1")
    }

    @Test func theRecapKeepsTheNewestMessagesWithinItsBound() throws {
        let messages = (1...50).map {
            Message(seq: $0, role: $0 % 2 == 1 ? .user : .assistant, content: "message \($0) " + String(repeating: "x", count: 300), inputTokens: nil, outputTokens: nil, at: Date())
        }
        let recap = try #require(TurnRunner.recap(of: messages, limit: 8000))
        #expect(recap.count <= 8000)
        #expect(recap.hasPrefix("[Recap of the earlier conversation, which could not be resumed]\n"))
        #expect(recap.hasSuffix("[End of recap]\n\n"))
        #expect(recap.contains("message 50 "))
        #expect(!recap.contains("message 1 "))
        #expect(recap.range(of: "message 49 ")!.lowerBound < recap.range(of: "message 50 ")!.lowerBound)
        let huge = [Message(seq: 1, role: .user, content: "start " + String(repeating: "y", count: 20_000) + " end", inputTokens: nil, outputTokens: nil, at: Date())]
        let cut = try #require(TurnRunner.recap(of: huge, limit: 8000))
        #expect(cut.count <= 8000)
        #expect(cut.contains(" end\n"))
        #expect(TurnRunner.recap(of: [], limit: 8000) == nil)
    }
}
