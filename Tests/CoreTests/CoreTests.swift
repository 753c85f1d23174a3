import Foundation
import Logging
import NurtureCore
import Runtime
import Testing

@Suite struct DurationTextTests {
    @Test(arguments: [("500ms", 500), ("30s", 30_000), ("15m", 900_000), ("6h", 21_600_000), ("2d", 172_800_000),
                      ("1w", 604_800_000), ("1h30m", 5_400_000), (" 2d ", 172_800_000)])
    func parses(text: String, expected: Int64) throws {
        #expect(try DurationText.milliseconds(text) == expected)
    }

    @Test(arguments: ["", "5", "d", "5x", "1h30", "99999999999999999999d"])
    func rejects(text: String) {
        #expect(throws: DurationText.ParseError.self) { try DurationText.milliseconds(text) }
    }

    @Test func formats() {
        #expect(DurationText.format(milliseconds: 90_000) == "1m30s")
        #expect(DurationText.format(milliseconds: 172_800_000) == "2d")
        #expect(DurationText.format(milliseconds: 0) == "0s")
    }
}

@Suite struct BackoffTests {
    @Test func growsExponentiallyWithinJitterAndCap() {
        let backoff = Backoff(baseMilliseconds: 100, capMilliseconds: 10_000)
        #expect(backoff.ceiling(attempt: 0) == 100)
        #expect(backoff.ceiling(attempt: 3) == 800)
        #expect(backoff.ceiling(attempt: 50) == 10_000)
        for attempt in 0..<20 {
            let d = backoff.delay(attempt: attempt)
            #expect(d >= backoff.ceiling(attempt: attempt) / 10 && d <= backoff.ceiling(attempt: attempt))
        }
    }
}

@Suite struct SHA1Tests {
    @Test func knownVectors() {
        #expect(SHA1.hex(Array("".utf8)) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        #expect(SHA1.hex(Array("abc".utf8)) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(SHA1.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)) == "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        // Redis's own SHA for `return 1` (as printed by SCRIPT LOAD).
        #expect(SHA1.hex(Array("return 1".utf8)) == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db")
    }
}

@Suite struct ConfigTests {
    @Test func defaultsFollowTheContract() throws {
        let c = try NurtureConfig.fromEnvironment([:])
        #expect(c.redisURL == "redis://127.0.0.1:6379/0")
        #expect(c.databaseURL == "postgres://127.0.0.1:5432/nurture")
        #expect(c.namespace == "nurture")
        #expect(c.secret == nil)
        #expect(c.logLevel == .info)
        #expect(c.webPort == 8080)
        #expect(c.publicURL == "http://127.0.0.1:8080")
        #expect(c.metricsPort == nil)
        #expect(c.allowTimeTravel == false)
    }

    @Test func readsEveryVariable() throws {
        let c = try NurtureConfig.fromEnvironment([
            "NURTURE_REDIS_URL": "redis://:pw@r:6380/2", "DATABASE_URL": "postgres://fallback/db",
            "NURTURE_NAMESPACE": "acme", "NURTURE_SECRET": "s3cret", "NURTURE_LOG_LEVEL": "debug",
            "NURTURE_WEB_PORT": "9000", "NURTURE_PUBLIC_URL": "https://mail.acme.test", "NURTURE_METRICS_PORT": "9464",
            "NURTURE_ALLOW_TIME_TRAVEL": "1",
        ])
        #expect(c.redisURL == "redis://:pw@r:6380/2")
        #expect(c.databaseURL == "postgres://fallback/db")
        #expect(c.namespace == "acme" && c.secret == "s3cret" && c.logLevel == .debug)
        #expect(c.webPort == 9000 && c.metricsPort == 9464 && c.publicURL == "https://mail.acme.test")
        #expect(c.allowTimeTravel)
        let preferred = try NurtureConfig.fromEnvironment(["NURTURE_DATABASE_URL": "postgres://a/b", "DATABASE_URL": "postgres://c/d"])
        #expect(preferred.databaseURL == "postgres://a/b")
    }

    @Test(arguments: [("NURTURE_WEB_PORT", "http"), ("NURTURE_METRICS_PORT", "70000"), ("NURTURE_LOG_LEVEL", "loud"),
                      ("NURTURE_REDIS_URL", "mysql://x"), ("NURTURE_NAMESPACE", "a b")])
    func badValuesNameTheVariable(variable: String, value: String) {
        let error = captureError(NurtureConfig.Invalid.self) { _ = try NurtureConfig.fromEnvironment([variable: value]) }
        #expect(error?.variable == variable)
    }
}

@Suite struct LogfmtTests {
    @Test func quotesWhatNeedsQuoting() {
        var line = ""
        LogfmtLogHandler.appendValueForTesting("plain", to: &line)
        line += " "
        LogfmtLogHandler.appendValueForTesting("two words \"q\"\nnext", to: &line)
        #expect(line == #"plain "two words \"q\"\nnext""#)
    }
}

@Suite struct ClockTests {
    @Test func offsetAppliesOnlyWithTimeTravel() throws {
        let clock = InstallationClock(timeTravelAllowed: false)
        let before = Date()
        #expect(abs(clock.now().timeIntervalSince(before)) < 1)
        #expect(clock.offsetMilliseconds == 0)
    }
}

/// Local copy of the test-support helper (CoreTests depends on no server).
func captureError<E: Error>(_ type: E.Type, _ body: () throws -> Void) -> E? {
    do { try body() } catch { return error as? E }
    return nil
}
