struct BenchCommand: AsyncParsableCommand { static let configuration = CommandConfiguration(commandName: "bench", abstract: "Benchmarks.") }
import ArgumentParser
