import Foundation
import NurtureCore
import Testing
import TestSupport

/// The built `nurture` binary: `NURTURE_BINARY`, else the one next to this test bundle (same build directory),
/// else `<repo>/.build/debug/nurture`, else `<repo>/.build-liquid/debug/nurture`. Missing is a failure, never a skip.
private enum Binary {
    struct Missing: Error, CustomStringConvertible { let description: String }

    static var repositoryRoot: String {
        // <repo>/Tests/CLITests/TemplatesCLITests.swift
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    static func path() throws -> String {
        // Linux runs `<build>/debug/nurturePackageTests.xctest` as an executable; macOS loads it as a bundle there.
        let besideTests = [Bundle.main.executableURL?.deletingLastPathComponent(), Bundle.main.bundleURL.deletingLastPathComponent()]
            .compactMap { $0?.appendingPathComponent("nurture").path }
            .filter { $0.contains("/.build") }
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["NURTURE_BINARY"], !env.isEmpty { candidates.append(env) }
        candidates += besideTests + [repositoryRoot + "/.build/debug/nurture", repositoryRoot + "/.build-liquid/debug/nurture"]
        for path in candidates where FileManager.default.isExecutableFile(atPath: path) { return path }
        throw Missing(description: "the nurture binary is missing (looked at \(candidates.joined(separator: ", "))): build it with `swift build`")
    }
}

private struct Run {
    let exitCode: Int32?
    let stdout: Data
    let stderr: String
}

/// Runs `nurture ARGS` with stdin from /dev/null, capturing stdout and stderr in files.
private func nurture(_ arguments: [String]) throws -> Run {
    let directory = TestEnvironment.scratchDirectory + "/" + TestEnvironment.uniqueName("templates-cli")
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let out = directory + "/stdout", err = directory + "/stderr"
    let child = try ChildProcess(executable: try Binary.path(), arguments: arguments, stdoutPath: out, stderrPath: err)
    child.wait()
    return Run(exitCode: child.exitCode, stdout: FileManager.default.contents(atPath: out) ?? Data(),
               stderr: String(decoding: FileManager.default.contents(atPath: err) ?? Data(), as: UTF8.self))
}

/// Writes a template to a fresh file and returns its path.
private func templateFile(_ contents: String) throws -> String {
    let path = TestEnvironment.scratchDirectory + "/" + TestEnvironment.uniqueName("template") + ".liquid"
    try Data(contents.utf8).write(to: URL(fileURLWithPath: path))
    return path
}

@Suite struct TemplatesCLITests {
    @Test func rendersByteForByteWithoutAddingANewline() throws {
        let path = try templateFile("Hi {{ contact.first_name | default: \"there\" }} ✓, {{ now | plus_days: 7 | date: \"%B %-d\" }}")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let run = try nurture(["templates", "render", path, "--data", #"{"contact":{"first_name":"Zoë"}}"#,
                               "--now", "2026-11-22T10:00:00Z"])
        #expect(run.exitCode == 0, "\(run.stderr)")
        #expect(run.stdout == Data("Hi Zoë ✓, November 29".utf8))
        #expect(run.stderr == "")

        let trailing = try templateFile("line\n{{ x }}\n\n")
        defer { try? FileManager.default.removeItem(atPath: trailing) }
        let r2 = try nurture(["templates", "render", trailing, "--data", #"{"x":"y"}"#])
        #expect(r2.stdout == Data("line\ny\n\n".utf8))
    }

    @Test func htmlModeEscapesUnlessRaw() throws {
        let path = try templateFile("<p>{{ v }}|{{ v | raw }}</p>")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let data = #"{"v":"<b>\"Tom\" & 'Jerry'</b>"}"#
        let html = try nurture(["templates", "render", path, "--html", "--data", data])
        #expect(html.exitCode == 0)
        #expect(String(decoding: html.stdout, as: UTF8.self)
                == "<p>&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;|<b>\"Tom\" & 'Jerry'</b></p>")
        let text = try nurture(["templates", "render", path, "--data", data])
        #expect(String(decoding: text.stdout, as: UTF8.self) == "<p><b>\"Tom\" & 'Jerry'</b>|<b>\"Tom\" & 'Jerry'</b></p>")
    }

    @Test func syntaxErrorPrintsLineColumnAndExits1() throws {
        let path = try templateFile("Hello\n  {{ name | shout }}")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let run = try nurture(["templates", "render", path])
        #expect(run.exitCode == 1)
        #expect(run.stdout.isEmpty)
        #expect(run.stderr == "2:13: unknown filter 'shout'\n")

        let unclosed = try templateFile("{% for i in list %}\n{% if i %}x{% endfor %}")
        defer { try? FileManager.default.removeItem(atPath: unclosed) }
        let r2 = try nurture(["templates", "render", unclosed])
        #expect(r2.exitCode == 1)
        #expect(r2.stderr.hasPrefix("2:12: 'endfor' does not belong here (inside 'if' opened at 2:1)"))
    }

    @Test func renderErrorExits1() throws {
        let path = try templateFile("{{ 1 | divided_by: 0 }}")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let run = try nurture(["templates", "render", path])
        #expect(run.exitCode == 1)
        #expect(run.stderr == "1:8: divided by 0\n")
    }

    @Test func badInputsExit1() throws {
        let path = try templateFile("x")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let badJSON = try nurture(["templates", "render", path, "--data", "{nope"])
        #expect(badJSON.exitCode == 1)
        #expect(badJSON.stderr.contains("--data is not valid JSON"))
        let notObject = try nurture(["templates", "render", path, "--data", "[1]"])
        #expect(notObject.exitCode == 1)
        let missing = try nurture(["templates", "render", path + ".missing"])
        #expect(missing.exitCode == 1)
        #expect(missing.stderr.contains("cannot read"))
        let usage = try nurture(["templates", "render"])
        #expect(usage.exitCode == 2)
    }

    @Test func dashReadsStdin() throws {
        // ChildProcess connects stdin to /dev/null: `-` renders the empty template.
        let run = try nurture(["templates", "render", "-"])
        #expect(run.exitCode == 0)
        #expect(run.stdout.isEmpty)
    }
}
