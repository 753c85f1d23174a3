import Channels
import Foundation
import Testing
import TestSupport

/// Headless Chromium (Debian's `chromium`) uses the preference centre of a real `nurture web` like a person on a
/// phone-sized screen: it unticks "Text messages (SMS)", saves, and the page that comes back is stored as a PNG
/// artifact, `<repo>/.test/artifacts/web-preferences.png` (git-ignored; ops/test's scratch folder is deleted after
/// the run, so the artifact is kept outside it). The test fails if the change did not reach PostgreSQL, and
/// fails (never skips) when Chromium is missing.
@Suite struct BrowserTests {
    static var chromium: String? {
        let candidates = [ProcessInfo.processInfo.environment["NURTURE_TEST_CHROMIUM"], "/usr/bin/chromium", "/usr/bin/chromium-browser"]
        return candidates.compactMap { $0 }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test func preferenceCentreInChromium() throws {
        guard let chromium = Self.chromium else {
            Issue.record("""
                headless Chromium is not installed (looked for /usr/bin/chromium): `apt-get install -y chromium` \
                (ops/test installs it), or point NURTURE_TEST_CHROMIUM at a binary
                """)
            return
        }
        let h = try WebHarness()
        try h.applyTemplates()
        let gil = try h.contact("u-gil", email: "gil@example.com")
        let url = h.links.preferencesURL(contactId: gil)
        let screenshot = h.scratch + "/preferences.png"
        let out = h.scratch + "/browser.out"
        let err = h.scratch + "/browser.err"
        let python = SinkProcess.python
        let script = WebBinary.fixture("browser_preferences.py")
        let arguments = [script, chromium, url, screenshot, "sms:marketing"]
        let p = try ChildProcess(executable: python.hasPrefix("/") ? python : "/usr/bin/env",
                                 arguments: python.hasPrefix("/") ? arguments : [python] + arguments,
                                 stdoutPath: out, stderrPath: err)
        let finished = p.wait(milliseconds: 120_000)
        if !finished { p.signal(SIGKILL); p.wait() }
        let stdout = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
        try #require(finished && p.exitCode == 0, "the browser script failed: \(stderr)\(stdout)\n\(h.log())")

        // What the person saw after saving.
        let state = try #require(try JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any], "\(stdout)")
        #expect(state["status"] as? String == "Your preferences are saved.")
        #expect(state["checked"] as? [String] == ["email:marketing"])
        // Mobile friendly: nothing wider than the 390 px viewport.
        #expect((state["width"] as? Int ?? 9_999) <= (state["viewport"] as? Int ?? 0), "page scrolls sideways: \(state)")
        // The screenshot is a real PNG, kept as the test's artifact.
        let png = try #require(FileManager.default.contents(atPath: screenshot))
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]) && png.count > 1_000)
        let artifacts = WebBinary.repositoryRoot + "/.test/artifacts"
        try FileManager.default.createDirectory(atPath: artifacts, withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: artifacts + "/web-preferences.png")
        try FileManager.default.copyItem(atPath: screenshot, toPath: artifacts + "/web-preferences.png")
        print("preference centre screenshot: \(artifacts)/web-preferences.png")

        // The change reached PostgreSQL (and the stream).
        #expect(try h.consents(gil) == ["marketing sms withdrawn preference-centre"])
        #expect(try h.eventNames() == ["Subscription Changed"])
    }
}
