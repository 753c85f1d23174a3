import Foundation

/// The built `nurture` binary the end-to-end tests run: `NURTURE_BINARY`, else `<repo>/.build/debug/nurture`.
public enum NurtureBinary {
    public struct Missing: Error, CustomStringConvertible {
        public let description: String
    }

    public static var repositoryRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    public static func path() throws -> String {
        let candidates = [ProcessInfo.processInfo.environment["NURTURE_BINARY"], repositoryRoot + "/.build/debug/nurture"]
            .compactMap { $0 }.filter { !$0.isEmpty }
        for path in candidates where FileManager.default.isExecutableFile(atPath: path) { return path }
        throw Missing(description: "the nurture binary is missing (looked at \(candidates.joined(separator: ", "))): build it with `swift build` (ops/test does)")
    }
}
