import Domain
import Testing

@Suite("MessageIDScan: provider request ids without a full parse")
struct MessageIDScanTests {
    /// What the full parser says: the ids (as `DevSink` reads them) and whether it is a batch; nil if not a JSON object.
    static func full(_ text: String) -> MessageIDScan.Result? {
        guard case .object(let object)? = try? ValueJSON.parse(Array(text.utf8)) else { return nil }
        if case .array(let messages)? = object["messages"] {
            return MessageIDScan.Result(ids: messages.map { $0["id"]?.stringValue }, isBatch: true)
        }
        return MessageIDScan.Result(ids: [object["id"]?.stringValue], isBatch: false)
    }

    @Test("batches and single messages give the ids the full parser gives")
    func agreesWithTheParser() {
        let bodies = [
            #"{"messages":[{"id":"a","channel":"email","to":"x@y.z","html":"<p>\"hi\" \\ \u00e9</p>","data":{"id":"nested","list":[1,2.5e3,-7,true,false,null,{"id":"deep"}]}},{"channel":"sms","id":"b"}]}"#,
            #"  { "id" : "0192-abc" , "channel" : "email", "subject": "Hi \ud83d\ude00" }  "#,
            #"{"messages":[]}"#,
            #"{"messages":[{"to":"no id"},{"id":"c"}]}"#,
            #"{"provider":"p","messages":[{"id":"d"}],"extra":{"messages":[{"id":"not this"}]}}"#,
            #"{}"#,
            #"{"id":"e","messages":[{"id":"f"}]}"#,
            #"{"messages":[{"id":"ünïcødé-😀","html":"日本語"}],"messages_x":"a"}"#,
            #"{"messages":"not a list","id":"g"}"#,
        ]
        for body in bodies {
            let scanned = MessageIDScan.scan(Array(body.utf8))
            #expect(scanned != nil, "\(body)")
            #expect(scanned == Self.full(body), "\(body)")
        }
    }

    @Test("anything it cannot read exactly is left to the full parser (nil)")
    func refusesWhatItCannotReadExactly() {
        let refused = [
            "", "[]", "\"id\"", "{", #"{"id":"a""#, #"{"id":"a",}"#, #"{"messages":[{"id":"a"},]}"#, #"{"id":tru}"#,
            #"{"id":"a"} x"#, #"{"messages":[1,2]}"#, #"{"id":"a\"b"}"#, #"{"id":7}"#, #"{"\u0069d":"a"}"#,
            #"{"id":"a","id":"b"}"#, #"{"messages":[{"id":"a","id":"b"}]}"#, "{\"id\":\"a\nb\"}", #"{"x":-}"#,
            String(repeating: "[", count: 10_000),
            "{\"x\":" + String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000) + "}",
        ]
        for body in refused {
            #expect(MessageIDScan.scan(Array(body.utf8)) == nil, "\(body.prefix(60))")
        }
        // Malformed UTF-8 inside any string (a truncated sequence, an overlong form, an encoded surrogate).
        for bad: [UInt8] in [[0xC3], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82]] {
            let body = Array(#"{"id":"a","html":""#.utf8) + bad + Array(#""}"#.utf8)
            #expect(MessageIDScan.scan(body) == nil, "\(bad)")
            #expect((try? ValueJSON.parse(body)) == nil, "the full parser refuses it too: \(bad)")
        }
    }

    @Test("random mutations of a batch never crash, and whatever it accepts the full parser reads the same way")
    func fuzz() {
        let base = Array(#"{"messages":[{"id":"a1","html":"<a href=\"x\">\u00e9</a>","n":[1,-2.5e-3,{"k":null}]},{"id":"b2","t":true}]}"#.utf8)
        var random = SplitMix64(seed: 42)
        let alphabet = Array(#"{}[]",:\"0123456789-+.eE tfnul aid"#.utf8)
        var accepted = 0
        for _ in 0..<20_000 {
            var body = base
            for _ in 0..<(1 + Int(random.next() % 4)) {
                let at = Int(random.next() % UInt64(body.count))
                switch random.next() % 3 {
                case 0: body[at] = alphabet[Int(random.next() % UInt64(alphabet.count))]
                case 1: body.remove(at: at)
                default: body.insert(alphabet[Int(random.next() % UInt64(alphabet.count))], at: at)
                }
            }
            if let scanned = MessageIDScan.scan(body) {
                accepted += 1
                let text = String(decoding: body, as: UTF8.self)
                #expect(scanned == Self.full(text), "\(text)")
            }
        }
        #expect(accepted > 2_000, "the mutations must leave enough valid bodies to compare: \(accepted)")
    }
}
