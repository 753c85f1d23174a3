import Channels
import Domain
import Foundation
import Testing

// TEMPORARY (not to be committed): release-mode compose throughput.
@Suite struct ComposeBenchmark {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["NURTURE_BENCH"] != nil)) func composeWelcome1() throws {
        let text = try String(contentsOfFile: MessageComposerTests.examplesPath, encoding: .utf8)
        var template: TemplateDefinition?
        for d in try Definitions.load(text) { if case .template(let t) = d.body, t.name == "welcome-1" { template = t } }
        let welcome = try #require(template)
        let links = SignedLinks(publicURL: "https://mail.acme.test", secret: "bench-secret")
        let context: Value = .object([
            "contact": .object(["first_name": .string("Ann"), "email": .string("ann@example.com"), "score": .number(12)]),
            "event": .object(["name": .string("Signed Up"), "properties": .object(["plan": .string("pro")])]),
            "workflow": .string("welcome"),
        ])
        let now = Date()
        let clock = ContinuousClock()
        for round in 0..<3 {
            let n = 200_000
            var bytes = 0
            let start = clock.now
            for i in 0..<n {
                let envelope = Envelope(deliveryId: "d-\(i)", to: "ann@example.com", contactId: "u-\(i)",
                                        from: "Acme <hello@acme.test>", source: .workflow(name: "welcome", step: 1),
                                        unsubscribeURL: "https://mail.acme.test/u/static-token")
                let m = try MessageComposer.compose(welcome, context: context, envelope: envelope, now: now)
                bytes &+= m.html!.utf8.count
            }
            let composeTime = clock.now - start
            let s2 = clock.now
            for i in 0..<n {
                let envelope = Envelope(deliveryId: "d-\(i)", to: "ann@example.com", contactId: "u-\(i)",
                                        from: "Acme <hello@acme.test>", source: .workflow(name: "welcome", step: 1),
                                        unsubscribeURL: links.unsubscribeURL(contactId: Int64(i), deliveryId: "d-\(i)"))
                let m = try MessageComposer.compose(welcome, context: context, envelope: envelope, now: now)
                bytes &+= MIMEMessage.render(m, date: now).count
                bytes &+= HTTPProviderRequest.body(m).count
            }
            let fullTime = clock.now - s2
            func rate(_ d: Duration) -> Int { Int(Double(n) / (Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)) }
            print("BENCH round \(round): compose welcome-1 \(rate(composeTime))/s; compose+signed link+MIME+JSON body \(rate(fullTime))/s (\(bytes))")
        }
    }
}
