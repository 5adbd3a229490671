import ArgumentParser

/// `sessionctl run -- claude …`: placeholder until the wrapper lands.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run an AI CLI turn that resumes its session.")
}
