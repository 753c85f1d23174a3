import Domain
import Foundation
import NurtureCore
import Runtime
import Synchronization
import Testing
import Transport

@Suite("DevSink: the local provider stand-in")
struct DevSinkTests {
    /// Starts a sink, posts `bodies` to it, and returns each answer with what `onRequest` saw.
    static func exchange(parseBodies: Bool, _ bodies: [String]) async throws -> [(reply: String, ids: [String], count: Int)] {
        let seen = Mutex<[SinkRecord]>([])
        let sink = try DevSink(host: "127.0.0.1", port: 0, quiet: true, parseBodies: parseBodies, onRequest: { r in seen.withLock { $0.append(r) } })
        let task = Task { try await sink.run() }
        defer { task.cancel() }
        // Generous: in the full parallel suite the concurrency pool that starts `run()` can be busy for a while.
        let port = try await sink.waitUntilListening(timeoutSeconds: 120)
        let replies = try await BlockingExecutor.shared.run { () throws -> [String] in
            let client = HTTPClient()
            defer { client.close() }
            return try bodies.map { body in
                let response = try client.send(HTTPRequest(url: "http://127.0.0.1:\(port)/email",
                                                           headers: [HTTPHeader("Content-Type", "application/json")], body: Array(body.utf8)))
                return String(decoding: response.body, as: UTF8.self)
            }
        }
        let records = seen.withLock { $0 }
        return zip(replies, records).map { ($0, $1.messageIDs, $1.messageCount) }
    }

    @Test("reading only the message ids answers exactly as parsing every body does")
    func idsOnlyAnswersTheSame() async throws {
        let bodies = [
            #"{"messages":[{"id":"d-1","channel":"email","to":"ann@example.com","html":"<p>Hi \"Ann\" 😀</p>"},{"id":"d-2","to":"bob@example.com"}]}"#,
            #"{"id":"d-3","channel":"email","to":"cy@example.com","subject":"Hello"}"#,
            #"{"messages":[{"id":"d-\u0034"}]}"#,  // an escaped id: the full parser reads it
            #"not json"#,
        ]
        let full = try await Self.exchange(parseBodies: true, bodies)
        let idsOnly = try await Self.exchange(parseBodies: false, bodies)
        #expect(full.count == 4 && idsOnly.count == 4)
        for (a, b) in zip(full, idsOnly) {
            #expect(a.reply == b.reply)
            #expect(a.ids == b.ids)
            #expect(a.count == b.count)
        }
        #expect(idsOnly[0].reply == #"{"results":[{"id":"d-1","status":"accepted"},{"id":"d-2","status":"accepted"}]}"#)
        #expect(idsOnly[2].ids == ["d-4"])
    }
}
