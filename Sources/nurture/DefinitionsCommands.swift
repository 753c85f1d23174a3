import ArgumentParser
import Domain
import Foundation
import Postgres
import Runtime
import Store

/// Reads definition files and directories (recursively `*.yaml` / `*.yml`, sorted) into a loader.
enum DefinitionFiles {
    static func collect(_ paths: [String]) throws -> [String] {
        var files: [String] = []
        let fm = FileManager.default
        for path in paths {
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else { throw UserError("\(path): no such file or directory") }
            if isDirectory.boolValue {
                guard let enumerator = fm.enumerator(atPath: path) else { throw UserError("\(path): cannot list directory") }
                var found: [String] = []
                while let relative = enumerator.nextObject() as? String {
                    let lower = relative.lowercased()
                    guard lower.hasSuffix(".yaml") || lower.hasSuffix(".yml") else { continue }
                    let full = (path as NSString).appendingPathComponent(relative)
                    var dir: ObjCBool = false
                    if fm.fileExists(atPath: full, isDirectory: &dir), !dir.boolValue { found.append(full) }
                }
                files += found.sorted()
            } else {
                files.append(path)
            }
        }
        var seen = Set<String>()
        return files.filter { seen.insert($0).inserted }
    }

    /// Loads every file; reference checks include `stored` names.
    static func load(_ paths: [String], stored: [DefinitionKind: Set<String>]) throws -> DefinitionReport {
        var loader = DefinitionLoader(environment: ProcessInfo.processInfo.environment)
        let files = try collect(paths)
        if files.isEmpty { throw UserError("no *.yaml or *.yml files in \(paths.joined(separator: " "))") }
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { throw UserError("cannot read \(file)") }
            guard let text = String(data: data, encoding: .utf8) else { throw UserError("\(file): not UTF-8 text") }
            loader.load(file: file, text: text)
        }
        return loader.finish(stored: stored)
    }

    static func storedNames(_ db: PostgresConnection) throws -> [DefinitionKind: Set<String>] {
        var out: [DefinitionKind: Set<String>] = [:]
        for (kind, names) in try DefinitionStore().names(on: db) {
            if let k = DefinitionKind(rawValue: kind) { out[k] = names }
        }
        return out
    }

    /// Prints diagnostics to stderr; exit 1 if any is an error.
    static func report(_ report: DefinitionReport) throws {
        for d in report.diagnostics { FileHandle.standardError.write(Data("\(d)\n".utf8)) }
        if !report.isValid {
            let n = report.errors.count
            FileHandle.standardError.write(Data("\(n) error\(n == 1 ? "" : "s") in \(report.documentCount) document\(report.documentCount == 1 ? "" : "s")\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct ValidateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check definition files without applying them.",
        discussion: """
            PATH is a YAML file (one or more documents separated by ---) or a directory, read recursively for *.yaml \
            and *.yml files in sorted order. Every document is checked: its kind and keys, types, durations, \
            expressions (types included), Liquid templates, stages, and references across all the files (a `send:` \
            must name a template, a trigger or `in_segment(...)` a segment). ${VAR} and ${VAR:-default} are taken \
            from the environment. Every problem is printed to stderr as `file:line:column: message`; the exit status \
            is 1 if there is any, else "N documents OK" is printed.
            Offline by default; with --database-url (or NURTURE_DATABASE_URL set), names already applied also count \
            as known for the reference checks.
            Examples:
              nurture validate examples/
              nurture validate workflows.yaml templates.yaml
              NURTURE_EMAIL_URL=https://mail.internal/send nurture validate definitions/
            See docs/definitions.md for the schema of every kind.
            """)

    @Argument(help: ArgumentHelp("Definition files or directories.", valueName: "PATH"))
    var paths: [String]

    @Option(name: .customLong("database-url"), help: "Also accept references to definitions already applied in this database.")
    var databaseURL: String?

    func run() async throws {
        var stored: [DefinitionKind: Set<String>] = [:]
        let env = ProcessInfo.processInfo.environment
        if let url = databaseURL ?? env["NURTURE_DATABASE_URL"] {
            do {
                let db = try PostgresConnection(url: url, reconnectForMilliseconds: 0)
                defer { db.close() }
                stored = try DefinitionFiles.storedNames(db)
            } catch {
                FileHandle.standardError.write(Data("note: could not read applied definitions (\(error)); checking the files alone\n".utf8))
            }
        }
        let report = try DefinitionFiles.load(paths, stored: stored)
        try DefinitionFiles.report(report)
        print("\(report.documentCount) document\(report.documentCount == 1 ? "" : "s") OK")
    }
}

struct ApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Apply definition files: workflows, segments, scoring, lifecycle, templates, providers, settings.",
        discussion: """
            Validates first (exactly as `nurture validate`, with the definitions already applied counting as known \
            names); on any error nothing is written and the exit status is 1. Then, in one transaction, each \
            definition whose content changed gets a new version (v1 for a new one) and becomes the current one; \
            unchanged definitions are left alone, so applying the same files twice is a no-op. Old versions are kept: \
            contacts in flight finish on the version they started. Prints one line per definition:
              created workflow/welcome-series (v1)
              updated segment/buyers (v1 → v2)
              unchanged template/welcome-1 (v1)
            Examples:
              nurture apply examples/
              nurture apply workflows.yaml --dry-run
            """)

    @Argument(help: ArgumentHelp("Definition files or directories.", valueName: "PATH"))
    var paths: [String]

    @Flag(name: .customLong("dry-run"), help: "Validate and show what would change, without writing.")
    var dryRun = false

    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let config = try connection.config()
        let db = try connection.database(config)
        defer { db.close() }
        let report = try DefinitionFiles.load(paths, stored: try DefinitionFiles.storedNames(db))
        try DefinitionFiles.report(report)
        let records = report.definitions.map {
            DefinitionRecord(kind: $0.kind.rawValue, name: $0.name, checksum: $0.checksum, specJSON: $0.canonicalJSON, source: $0.source)
        }
        let store = DefinitionStore()
        let changes: [DefinitionChange]
        if dryRun {
            changes = try store.plan(records, on: db)
        } else {
            let clock = InstallationClock(timeTravelAllowed: config.allowTimeTravel)
            try? clock.refresh(from: db)
            let user = ProcessInfo.processInfo.environment["USER"] ?? ProcessInfo.processInfo.environment["LOGNAME"]
            let by = "\(user ?? "unknown")@\(ProcessInfo.processInfo.hostName)"
            changes = try store.apply(records, appliedBy: by, at: clock.now(), on: db)
        }
        for change in changes { print((dryRun ? "(dry run) " : "") + change.description) }
        let changed = changes.filter { if case .unchanged = $0.action { return false }; return true }.count
        print("\(changes.count) definition\(changes.count == 1 ? "" : "s"), \(changed) changed" + (dryRun ? " (dry run: nothing written)" : ""))
    }
}
