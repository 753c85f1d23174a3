import ArgumentParser

/// `nurture sink`: a local HTTP sink for demos and benchmarks (placeholder until built).
struct SinkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sink", abstract: "Local HTTP sink (not built yet).")
    func run() async throws { throw UserError("nurture sink is not built yet") }
}
