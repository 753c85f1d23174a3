import ArgumentParser

/// `nurture workflows`: placeholder until built.
struct WorkflowsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "workflows", abstract: "Workflows (not built yet).")
    func run() async throws { throw UserError("nurture workflows is not built yet") }
}
