import Domain
import Foundation
import Testing

/// The examples directory of the package (Tests/DomainTests/ → ../../examples).
private let examplesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("examples")

private func exampleFiles() throws -> [(String, String)] {
    let names = try FileManager.default.contentsOfDirectory(atPath: examplesDirectory.path)
        .filter { $0.hasSuffix(".yaml") }.sorted()
    return try names.map { ($0, try String(contentsOf: examplesDirectory.appendingPathComponent($0), encoding: .utf8)) }
}

/// The diagnostics of one YAML text, as `file:line:column: message` strings.
private func problems(_ yaml: String, env: [String: String] = [:]) -> [String] {
    DefinitionLoader.load(file: "f.yaml", text: yaml, environment: env).diagnostics.map(\.description)
}

private func firstProblem(_ yaml: String, env: [String: String] = [:]) -> String {
    problems(yaml, env: env).first ?? "no problem"
}

@Suite struct DefinitionsExampleTests {
    @Test func everyExampleLoadsAndCrossReferencesResolve() throws {
        var loader = DefinitionLoader(environment: [:])
        let files = try exampleFiles()
        #expect(files.count == 7)
        for (name, text) in files { loader.load(file: name, text: text) }
        let report = loader.finish()
        #expect(report.diagnostics.map(\.description) == [])
        #expect(report.documentCount == report.definitions.count)
        let kinds = Dictionary(grouping: report.definitions, by: \.kind).mapValues(\.count)
        #expect(kinds[.settings] == 1)
        #expect(kinds[.provider] == 6)
        #expect(kinds[.lifecycle] == 1)
        #expect(kinds[.segment] == 5)
        #expect(kinds[.workflow] == 9)
        #expect(kinds[.template] == 19)
        #expect(kinds[.scoring] == 1)
        // Apply order: settings first, workflows last.
        #expect(report.definitions.first?.kind == .settings)
        #expect(report.definitions.last?.kind == .workflow)
    }

    @Test func eachExampleFileLoadsOnItsOwnExceptCrossReferences() throws {
        for (name, text) in try exampleFiles() where name != "workflows.yaml" {
            let report = DefinitionLoader.load(file: name, text: text)
            #expect(report.diagnostics.isEmpty, "\(name): \(report.diagnostics)")
        }
    }

    @Test func typedModelsOfTheExamples() throws {
        var loader = DefinitionLoader(environment: ["NURTURE_SMS_URL": "https://sms.example/send"])
        for (name, text) in try exampleFiles() { loader.load(file: name, text: text) }
        let defs = loader.finish().definitions
        func body(_ kind: DefinitionKind, _ name: String) -> DefinitionBody? { defs.first { $0.kind == kind && $0.name == name }?.body }
        guard case .settings(let s)? = body(.settings, "default") else { Issue.record("settings"); return }
        #expect(s.timezone == "Europe/Paris")
        #expect(s.quietHours?.from == ClockTime(hour: 21, minute: 0))
        #expect(s.frequencyCaps[.email]?.count == 3 && s.frequencyCaps[.email]?.periodSeconds == 86_400)
        guard case .provider(let sms)? = body(.provider, "sms"), case .provider(let email)? = body(.provider, "email"),
              case .provider(let ads)? = body(.provider, "ads-audiences") else { Issue.record("providers"); return }
        #expect(sms.url == "https://sms.example/send")
        #expect(email.url == "http://127.0.0.1:8025/email")
        #expect(email.rateLimit?.perSecond == 2000)
        #expect(ads.batch == 500)
        guard case .template(let t)? = body(.template, "welcome-1") else { Issue.record("template"); return }
        #expect(t.category == .marketing && t.channel == .email && t.subject != nil && t.text != nil)
        guard case .lifecycle(let l)? = body(.lifecycle, "default") else { Issue.record("lifecycle"); return }
        #expect(l.initial == "subscriber" && l.rules.count == 6)
        guard case .workflow(let w)? = body(.workflow, "abandoned-cart") else { Issue.record("workflow"); return }
        #expect(w.reentry == .after(seconds: 86_400))
        #expect(w.steps.count == 7)
        if case .event(let name, let condition, nil) = w.trigger { #expect(name == "Product Added" && condition != nil) } else { Issue.record("trigger") }
        guard case .workflow(let birthday)? = body(.workflow, "birthday"),
              case .date(let attribute, let at) = birthday.trigger else { Issue.record("birthday"); return }
        #expect(attribute == "birthday" && at == ClockTime(hour: 9, minute: 0))
        guard case .workflow(let priceDrop)? = body(.workflow, "price-drop"),
              case .event(_, _, let audience) = priceDrop.trigger else { Issue.record("price-drop"); return }
        #expect(audience == "subscribed")
    }

    @Test func checksumIsStableAndIgnoresFormatting() {
        let a = DefinitionLoader.load(file: "a.yaml", text: "kind: segment\nname: s\nwhere: 'has_tag(\"x\")'\n").definitions[0]
        let b = DefinitionLoader.load(file: "b.yaml", text: "# comment\nwhere:   \"has_tag(\\\"x\\\")\"\nname: s\nkind: segment\n").definitions[0]
        let c = DefinitionLoader.load(file: "c.yaml", text: "kind: segment\nname: s\nwhere: 'has_tag(\"y\")'\n").definitions[0]
        #expect(a.checksum == b.checksum)
        #expect(a.checksum != c.checksum)
        #expect(a.canonicalJSON == #"{"kind":"segment","name":"s","where":"has_tag(\"x\")"}"#)
        #expect(a.checksum == SHA256.hex(a.canonicalJSON))
        // A stored spec decodes back to the same definition.
        #expect(DefinitionLoader.decode(spec: a.spec)?.checksum == a.checksum)
    }

    @Test func templateCategoryDefaultsToMarketingInTheSpec() {
        let d = DefinitionLoader.load(file: "t.yaml", text: "kind: template\nname: t\nchannel: sms\ntext: hi\n").definitions[0]
        #expect(d.spec["category"] == .string("marketing"))
    }
}

@Suite struct DefinitionsErrorTests {
    @Test func yamlSyntaxError() {
        #expect(firstProblem("kind: segment\nname: [a\nwhere: x\n").hasPrefix("f.yaml:3:6: YAML syntax error:"))
        #expect(firstProblem("kind: segment\n  name: x\n").hasPrefix("f.yaml:2:7: YAML syntax error:"))
    }

    @Test func duplicateKey() {
        #expect(firstProblem("kind: segment\nname: a\nname: b\nwhere: 'true'\n").contains("duplicate key 'name'"))
    }

    @Test func unknownKeyWithSuggestion() {
        #expect(firstProblem("kind: segment\nname: a\nwher: 'true'\n")
                == "f.yaml:3:1: unknown key 'wher' in segment; did you mean 'where'?")
        let yaml = """
            kind: workflow
            name: w
            trigger:
              event: X
            steps:
              - send: t
                delay: 1d
            """
        #expect(problems(yaml).contains("f.yaml:7:5: unknown key 'delay' in step; did you mean 'then'?")
                || problems(yaml).contains { $0.hasPrefix("f.yaml:7:5: unknown key 'delay' in step") })
    }

    @Test func unknownKindAndMissingKind() {
        #expect(firstProblem("kind: workflw\nname: a\n") == "f.yaml:1:7: 'kind' must be one of settings, provider, template, scoring, segment, lifecycle, workflow, found \"workflw\"; did you mean 'workflow'?")
        #expect(firstProblem("name: a\n").hasPrefix("f.yaml:1:1: missing 'kind:'"))
    }

    @Test func secondDocumentPositions() {
        let yaml = "kind: segment\nname: a\nwhere: 'true'\n---\nkind: segment\nname: b\nwhere: 'contact.score >'\n"
        #expect(firstProblem(yaml).hasPrefix("f.yaml:7:"))
    }

    @Test func wrongTypes() {
        #expect(firstProblem("kind: provider\nname: p\nchannel: email\ntype: http\nurl: http://x\nbatch: lots\n")
                == "f.yaml:6:8: 'batch' must be an integer, found a string")
        #expect(firstProblem("kind: lifecycle\nstages: lead\ninitial: lead\n")
                .hasPrefix("f.yaml:2:9: 'stages' must be a list, found a string"))
        #expect(firstProblem("kind: workflow\nname: w\ntrigger: [a]\nsteps:\n  - wait: 1d\n")
                == "f.yaml:3:10: trigger must be a mapping, found a list")
        #expect(firstProblem("kind: provider\nname: p\nchannel: fax\ntype: http\nurl: http://x\n")
                .hasPrefix("f.yaml:3:10: 'channel' must be one of email, sms, push, webhook, found \"fax\""))
    }

    @Test func badDurations() {
        #expect(firstProblem("kind: workflow\nname: w\ntrigger:\n  event: X\nsteps:\n  - wait: 2 days\n")
                .hasPrefix("f.yaml:6:11: 'wait': invalid duration \"2 days\""))
        #expect(firstProblem("kind: workflow\nname: w\ntrigger:\n  event: X\nreentry: after soon\nsteps:\n  - wait: 1d\n")
                .hasPrefix("f.yaml:5:10: 'reentry' must be never, always or after DURATION"))
        #expect(firstProblem("kind: scoring\nname: s\nrules: []\ndecay:\n  half_life: 30x\n")
                .hasPrefix("f.yaml:5:14: 'half_life': invalid duration"))
    }

    @Test func badExpressionPointsInsideTheExpression() {
        // Single-quoted: the quote is at column 8, the expression text starts at column 9.
        let yaml = "kind: segment\nname: a\nwhere: 'contact.score >= \"x\" and nope(1)'\n"
        let problem = firstProblem(yaml)
        #expect(problem.hasPrefix("f.yaml:3:"), "\(problem)")
        let column = Int(problem.split(separator: ":")[2])!
        #expect(column > 9, "\(problem)")
        // Plain scalar: column of the node plus the offset.
        #expect(firstProblem("kind: segment\nname: a\nwhere: contact.score >= \n").hasPrefix("f.yaml:3:"))
        // Event scope is refused in a segment, at the position of `event`.
        let scoped = firstProblem("kind: segment\nname: a\nwhere: 'contact.score > 1 and event.name == \"x\"'\n")
        #expect(scoped.hasPrefix("f.yaml:3:31:"), "\(scoped)")
    }

    @Test func badExpressionInAnIfStepInABlock() {
        let yaml = """
            kind: workflow
            name: w
            trigger:
              event: X
            steps:
              - if: 'count("A") =='
                then:
                  - wait: 1d
            """
        let problem = firstProblem(yaml)
        #expect(problem.hasPrefix("f.yaml:6:"), "\(problem)")
    }

    @Test func badLiquidInQuotedAndBlockScalars() {
        // Quoted, single line: {{ x | nope }} — the filter name is at template column 8; the text starts at column 11.
        let quoted = firstProblem("kind: template\nname: t\nchannel: sms\ntext: \"{{ x | nope }}\"\n")
        #expect(quoted == "f.yaml:4:15: 'text': unknown filter 'nope'", "\(quoted)")
        // Literal block: line offset from the indicator, column offset from the indentation.
        let block = """
            kind: template
            name: t
            channel: email
            subject: hi
            html: |
              <p>ok</p>
              <p>{{ x | nope }}</p>
            """
        #expect(firstProblem(block) == "f.yaml:7:13: 'html': unknown filter 'nope'", "\(firstProblem(block))")
    }

    @Test func unknownStageInLifecycle() {
        let yaml = "kind: lifecycle\nstages: [lead, customer]\ninitial: lead\nrules:\n  - to: custmer\n    when: 'event.name == \"x\"'\n"
        #expect(firstProblem(yaml) == "f.yaml:5:9: 'to': unknown stage 'custmer' (stages: lead, customer); did you mean 'customer'?")
        #expect(firstProblem("kind: lifecycle\nstages: [lead]\ninitial: nobody\n").hasPrefix("f.yaml:3:10: 'initial': unknown stage 'nobody'"))
    }

    @Test func triggerNeedsExactlyOneKind() {
        #expect(firstProblem("kind: workflow\nname: w\ntrigger:\n  event: X\n  when: 'true'\nsteps:\n  - wait: 1d\n")
                .hasPrefix("f.yaml:4:3: trigger must have exactly one of"))
        #expect(firstProblem("kind: workflow\nname: w\ntrigger:\n  segment_entered: s\n  where: 'true'\nsteps:\n  - wait: 1d\n")
                .contains("'where' is not allowed with a segment_entered trigger"))
    }

    @Test func unknownTemplateIsAnErrorAtTheStepUnlessStored() {
        let yaml = "kind: workflow\nname: w\ntrigger:\n  event: X\nsteps:\n  - wait: 1d\n  - send: welcom\n"
        var loader = DefinitionLoader()
        loader.load(file: "f.yaml", text: yaml)
        loader.load(file: "g.yaml", text: "kind: template\nname: welcome\nchannel: sms\ntext: hi\n")
        #expect(loader.finish().diagnostics.map(\.description)
                == ["f.yaml:7:11: send: unknown template 'welcom' (not in these files nor applied before); did you mean 'welcome'?"])
        #expect(loader.finish(stored: [.template: ["welcom"]]).diagnostics.isEmpty)
    }

    @Test func invalidTimezoneAndClock() {
        #expect(firstProblem("kind: settings\ntimezone: Mars/Olympus\n").hasPrefix("f.yaml:2:11: 'timezone' must be an IANA time zone"))
        #expect(firstProblem("kind: settings\ntimezone: UTC\nquiet_hours:\n  from: '25:00'\n  to: '08:00'\n")
                .hasPrefix("f.yaml:4:9: 'from' must be a time of day"))
    }

    @Test func definedTwice() {
        let yaml = "kind: segment\nname: a\nwhere: 'true'\n---\nkind: segment\nname: a\nwhere: 'true'\n"
        #expect(firstProblem(yaml) == "f.yaml:5:1: segment/a is defined twice (first at f.yaml:1)")
    }
}

@Suite struct DefinitionsEnvironmentTests {
    private let provider = "kind: provider\nname: p\nchannel: email\ntype: http\nurl: ${MAIL_URL:-http://localhost/mail}\n"

    @Test func defaultAndSetValue() {
        func url(_ env: [String: String]) -> String? {
            guard case .provider(let p)? = DefinitionLoader.load(file: "f.yaml", text: provider, environment: env).definitions.first?.body else { return nil }
            return p.url
        }
        #expect(url([:]) == "http://localhost/mail")
        #expect(url(["MAIL_URL": "https://mail.example/v1"]) == "https://mail.example/v1")
    }

    @Test func unsetWithoutDefaultNamesTheVariableAndPosition() {
        let yaml = "kind: provider\nname: p\nchannel: email\ntype: http\nurl: \"https://${MAIL_HOST}/send\"\n"
        #expect(firstProblem(yaml).hasPrefix("f.yaml:5:15: environment variable MAIL_HOST is not set"))
        #expect(problems(yaml, env: ["MAIL_HOST": "mail.example"]).isEmpty)
    }

    @Test func substitutedNumbersKeepTheirType() {
        let yaml = "kind: provider\nname: p\nchannel: webhook\ntype: http\nurl: http://x\nbatch: ${BATCH:-50}\n"
        guard case .provider(let p)? = DefinitionLoader.load(file: "f.yaml", text: yaml, environment: ["BATCH": "7"]).definitions.first?.body else {
            Issue.record("not loaded"); return
        }
        #expect(p.batch == 7)
    }

    @Test func escapedDollar() {
        let yaml = "kind: template\nname: t\nchannel: sms\ntext: 'costs $${PRICE}'\n"
        guard case .template(let t)? = DefinitionLoader.load(file: "f.yaml", text: yaml).definitions.first?.body else {
            Issue.record("not loaded"); return
        }
        #expect(t.text?.source == "costs ${PRICE}")
    }
}

@Suite struct SegmentDependencyTests {
    @Test func aSegmentCycleIsAnErrorAtTheSegment() {
        let yaml = """
            kind: segment
            name: a
            where: 'in_segment("b")'
            ---
            kind: segment
            name: b
            where: 'in_segment("a") or has_tag("x")'
            ---
            kind: segment
            name: c
            where: 'in_segment("c")'
            ---
            kind: segment
            name: d
            where: 'in_segment("a")'
            """
        #expect(problems(yaml) == [
            "f.yaml:1:1: segment 'a' depends on itself through in_segment: a → b → a",
            "f.yaml:9:1: segment 'c' depends on itself through in_segment: c → c",
        ])
    }
}
