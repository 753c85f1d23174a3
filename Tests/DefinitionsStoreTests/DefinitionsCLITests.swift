import Foundation
import Postgres
import Store
import Testing
import TestSupport

private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

private struct Run {
    let exitCode: Int32?
    let stdout: String
    let stderr: String
}

/// Runs the `nurture` binary of this build (`NURTURE_BINARY`, set by ops/test).
private func nurture(_ arguments: [String], environment extra: [String: String] = [:]) throws -> Run {
    let binary = try #require(ProcessInfo.processInfo.environment["NURTURE_BINARY"], "run through ops/test (NURTURE_BINARY)")
    let directory = TestEnvironment.scratchDirectory + "/" + TestEnvironment.uniqueName("defs-cli")
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    var env = ProcessInfo.processInfo.environment
    env["NURTURE_DATABASE_URL"] = nil
    env["DATABASE_URL"] = nil
    for (k, v) in extra { env[k] = v }
    let out = directory + "/stdout", err = directory + "/stderr"
    let child = try ChildProcess(executable: binary, arguments: arguments, environment: env, stdoutPath: out, stderrPath: err)
    child.wait()
    func read(_ path: String) -> String { String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self) }
    return Run(exitCode: child.exitCode, stdout: read(out), stderr: read(err))
}

@Suite struct DefinitionsCLITests {
    @Test func validateExamplesAndErrors() throws {
        let ok = try nurture(["validate", repositoryRoot + "/examples"])
        #expect(ok.exitCode == 0, "\(ok.stderr)")
        #expect(ok.stdout == "42 documents OK\n")

        let path = TestEnvironment.scratchDirectory + "/" + TestEnvironment.uniqueName("bad") + ".yaml"
        try Data("kind: segment\nname: a\nwher: 'true'\n---\nkind: provider\nname: p\nchannel: email\ntype: http\nurl: ${NOPE_URL}\n".utf8)
            .write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let bad = try nurture(["validate", path])
        #expect(bad.exitCode == 1)
        #expect(bad.stderr.contains("\(path):3:1: unknown key 'wher' in segment; did you mean 'where'?\n"), "\(bad.stderr)")
        #expect(bad.stderr.contains("\(path):9:6: environment variable NOPE_URL is not set"), "\(bad.stderr)")
        #expect(bad.stdout.isEmpty)
    }

    @Test func applyThenReapplyThenChange() throws {
        let database = try TestDatabase.create(prefix: "defscli")
        defer { database.drop() }
        let db = try database.connect()
        defer { db.close() }
        _ = try Migrator().migrate(db)
        let url = ["--database-url", database.url]

        // A file with an error: exit 1, nothing written.
        let broken = TestEnvironment.scratchDirectory + "/" + TestEnvironment.uniqueName("broken")
        try FileManager.default.createDirectory(atPath: broken, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: broken) }
        try Data("kind: segment\nname: a\nwhere: 'contact.score >'\n".utf8).write(to: URL(fileURLWithPath: broken + "/s.yaml"))
        let refused = try nurture(["apply", broken] + url)
        #expect(refused.exitCode == 1)
        #expect(try db.query("SELECT count(*) FROM definitions").first?[0].int == 0)

        let dry = try nurture(["apply", repositoryRoot + "/examples", "--dry-run"] + url)
        #expect(dry.exitCode == 0, "\(dry.stderr)")
        #expect(try db.query("SELECT count(*) FROM definitions").first?[0].int == 0)

        let first = try nurture(["apply", repositoryRoot + "/examples"] + url)
        #expect(first.exitCode == 0, "\(first.stderr)")
        #expect(first.stdout.contains("created workflow/welcome-series (v1)\n"))
        #expect(first.stdout.contains("created settings/default (v1)\n"))
        #expect(try db.query("SELECT count(*) FROM definitions").first?[0].int == 42)

        let second = try nurture(["apply", repositoryRoot + "/examples"] + url)
        #expect(second.exitCode == 0, "\(second.stderr)")
        #expect(second.stdout.contains("unchanged template/welcome-1 (v1)\n"))
        #expect(!second.stdout.contains("created") && !second.stdout.contains("updated"))

        // A workflow file alone validates against what is applied (its templates are stored).
        let alone = try nurture(["validate", repositoryRoot + "/examples/workflows.yaml"] + url)
        #expect(alone.exitCode == 0, "\(alone.stderr)")

        // Change one value through the environment: only that provider gets a new version.
        let third = try nurture(["apply", repositoryRoot + "/examples"] + url, environment: ["NURTURE_SMS_URL": "https://sms.example/v2"])
        #expect(third.exitCode == 0, "\(third.stderr)")
        #expect(third.stdout.contains("updated provider/sms (v1 → v2)\n"), "\(third.stdout)")
        #expect(third.stdout.components(separatedBy: "updated ").count == 2)
        let head = try DefinitionStore().current(kind: "provider", name: "sms", on: db)
        #expect(head?.version == 2)
        #expect(head?.specJSON.contains("https://sms.example/v2") == true)
    }
}
