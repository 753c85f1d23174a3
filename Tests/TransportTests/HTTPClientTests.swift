import Foundation
import TestSupport
import Testing
import Transport

@Suite(.serialized)
struct HTTPClientTests {
    init() { Curl.globalInit() }

    @Test func statusCodesComeBackAsResponses() throws {
        let sink = try SinkProcess(script: "http_sink.py")
        defer { sink.stop() }
        let client = HTTPClient()
        for status in [200, 201, 404, 429, 500] {
            let response = try client.send(HTTPRequest(url: "http://127.0.0.1:\(sink.port)/status/\(status)", body: Array("{}".utf8)))
            #expect(response.status == status)
            #expect(response.bodyText == "status \(status)")
            #expect(response.header("content-length") == "\("status \(status)".utf8.count)")
        }
    }

    @Test func headersAndBinaryBodyArriveIntact() throws {
        let sink = try SinkProcess(script: "http_sink.py")
        defer { sink.stop() }
        var body: [UInt8] = Array(0...255) + Array(0...255).reversed()
        body += Array("Grüße 🎉 \r\n\0 end".utf8)
        let request = HTTPRequest(
            method: "POST", url: "http://127.0.0.1:\(sink.port)/echo",
            headers: [HTTPHeader("Content-Type", "application/json"), HTTPHeader("X-Api-Key", "k-123"),
                      HTTPHeader("X-Multi", "one"), HTTPHeader("X-Multi", "two"), HTTPHeader("X-Empty", "")],
            body: body)
        let response = try HTTPClient(userAgent: "nurture-test/1").send(request)
        #expect(response.status == 200)
        #expect(response.body == body)
        #expect(response.header("X-ECHO-X-API-KEY") == "k-123")
        #expect(response.header("x-echo-method") == "POST")

        let record = try #require(try sink.records(HTTPRecord.self).last)
        #expect(record.method == "POST")
        #expect(record.path == "/echo")
        #expect(record.body == body)
        #expect(record.header("Content-Type") == "application/json")
        #expect(record.header("X-Api-Key") == "k-123")
        #expect(record.headers.filter { $0[0] == "X-Multi" }.map { $0[1] } == ["one", "two"])
        #expect(record.header("X-Empty") == "")
        #expect(record.header("User-Agent") == "nurture-test/1")
        #expect(record.header("Content-Length") == "\(body.count)")
        #expect(record.header("Expect") == nil)
    }

    @Test func methodsAndDefaultsGoOutAsAsked() throws {
        let sink = try SinkProcess(script: "http_sink.py")
        defer { sink.stop() }
        let client = HTTPClient()
        let base = "http://127.0.0.1:\(sink.port)"
        #expect(try client.send(HTTPRequest(method: "GET", url: base + "/get?x=1")).status == 200)
        #expect(try client.send(HTTPRequest(method: "PUT", url: base + "/put", body: [1, 2, 3])).status == 200)
        #expect(try client.send(HTTPRequest(method: "DELETE", url: base + "/delete")).status == 200)
        let head = try client.send(HTTPRequest(method: "HEAD", url: base + "/status/204"))
        #expect(head.status == 204)
        #expect(head.body.isEmpty)
        #expect(try client.send(HTTPRequest(method: "POST", url: base + "/post", body: Array("a=b".utf8))).status == 200)

        let records = try sink.records(HTTPRecord.self)
        #expect(records.map(\.method) == ["GET", "PUT", "DELETE", "HEAD", "POST"])
        #expect(records.map(\.path) == ["/get?x=1", "/put", "/delete", "/status/204", "/post"])
        #expect(records[1].body == [1, 2, 3])
        #expect(records[0].header("Content-Length") == nil)
        // No Content-Type unless the caller sets one (curl's form-urlencoded default is suppressed).
        #expect(records[4].header("Content-Type") == nil)
        #expect(records[4].body == Array("a=b".utf8))
    }

    @Test func sequentialRequestsReuseOneConnection() throws {
        let sink = try SinkProcess(script: "http_sink.py")
        defer { sink.stop() }
        let client = HTTPClient()
        let url = "http://127.0.0.1:\(sink.port)/events"
        let payload = Array(#"{"event":"delivered","id":1}"#.utf8)
        for _ in 0..<100 {
            let response = try client.send(HTTPRequest(url: url, headers: [HTTPHeader("Content-Type", "application/json")], body: payload))
            #expect(response.status == 200)
        }
        #expect(client.connectionsOpened == 1)
        let records = try sink.records(HTTPRecord.self)
        #expect(records.count == 100)
        #expect(Set(records.map(\.client_port)).count == 1)

        // Informal throughput over the kept-alive connection (the single Python sink is the limit).
        let rounds = 1_000
        let start = ContinuousClock.now
        for _ in 0..<rounds {
            _ = try client.send(HTTPRequest(url: url, headers: [HTTPHeader("Content-Type", "application/json")], body: payload))
        }
        let seconds = (ContinuousClock.now - start) / .seconds(1)
        #expect(client.connectionsOpened == 1)
        print("HTTPClient keep-alive: \(rounds) POSTs in \(String(format: "%.3f", seconds)) s = \(Int(Double(rounds) / seconds)) req/s")
    }

    @Test func serverRestartBetweenRequestsIsTransparent() throws {
        let first = try SinkProcess(script: "http_sink.py")
        let client = HTTPClient()
        #expect(try client.send(HTTPRequest(url: "http://127.0.0.1:\(first.port)/a")).status == 200)
        first.stop()   // the kept-alive connection is now dead
        let second = try SinkProcess(script: "http_sink.py", port: first.port)
        defer { second.stop() }
        #expect(try client.send(HTTPRequest(url: "http://127.0.0.1:\(second.port)/b")).status == 200)
        #expect(client.connectionsOpened == 2)
        #expect(try second.records(HTTPRecord.self).map(\.path) == ["/b"])
    }

    @Test func closedPortIsAQuickConnectError() throws {
        let port = TestEnvironment.freePort()   // nothing listens there
        let client = HTTPClient(connectTimeoutMilliseconds: 2_000)
        let start = ContinuousClock.now
        let error = #expect(throws: TransportError.self) {
            _ = try client.send(HTTPRequest(url: "http://127.0.0.1:\(port)/x"))
        }
        #expect(ContinuousClock.now - start < .seconds(1))
        #expect(error?.kind == .connect)
        #expect(error?.isTransient == true)
        #expect(error?.curlCode == 7)
        #expect(error?.smtpCode == nil)
    }

    @Test func slowServerTimesOutWithoutHanging() throws {
        let sink = try SinkProcess(script: "http_sink.py")
        defer { sink.stop() }
        let client = HTTPClient()
        let start = ContinuousClock.now
        let error = #expect(throws: TransportError.self) {
            _ = try client.send(HTTPRequest(method: "GET", url: "http://127.0.0.1:\(sink.port)/slow/3000", timeoutMilliseconds: 300))
        }
        let elapsed = ContinuousClock.now - start
        #expect(error?.kind == .timeout)
        #expect(error?.isTransient == true)
        #expect(elapsed >= .milliseconds(250))
        #expect(elapsed < .milliseconds(1_500))
        // The client is still usable afterwards (on a new connection: the timed-out one was dropped).
        #expect(try client.send(HTTPRequest(url: "http://127.0.0.1:\(sink.port)/status/202")).status == 202)
    }

    @Test(arguments: ["http://exa mple.com/", "not a url", "ftp://127.0.0.1/file", "http://[::1/", "", "file:///etc/passwd"])
    func malformedURLIsInvalidURL(url: String) throws {
        let error = #expect(throws: TransportError.self) {
            _ = try HTTPClient().send(HTTPRequest(url: url))
        }
        #expect(error?.kind == .invalidURL)
        #expect(error?.isTransient == false)
    }

    @Test func errorsNeverShowCredentialsQueryOrBody() throws {
        let port = TestEnvironment.freePort()
        let error = #expect(throws: TransportError.self) {
            _ = try HTTPClient().send(HTTPRequest(url: "http://user:hunter2@127.0.0.1:\(port)/send?api_key=s3cret",
                                                  body: Array("personal@example.com".utf8)))
        }
        let text = "\(error.map { String(describing: $0) } ?? "") \(error?.message ?? "")"
        #expect(error?.kind == .connect)
        #expect(!text.contains("hunter2"))
        #expect(!text.contains("s3cret"))
        #expect(!text.contains("personal@example.com"))
        #expect(text.contains("127.0.0.1"))
    }

    @Test func headerInjectionIsRefused() throws {
        let error = #expect(throws: TransportError.self) {
            _ = try HTTPClient().send(HTTPRequest(url: "http://127.0.0.1:1/", headers: [HTTPHeader("X-A", "ok\r\nX-Evil: 1")]))
        }
        #expect(error?.kind == .other)
    }
}
