import Domain
import Testing

/// Step addressing: the paths an enrollment stores, what comes next, branches, numbering.
@Suite struct WorkflowProgramTests {
    static func program(_ yaml: String) throws -> WorkflowProgram {
        var loader = DefinitionLoader()
        loader.load(file: "w.yaml", text: yaml)
        let report = loader.finish(stored: [.template: ["a", "b", "c", "d", "e"]])
        guard let d = report.definitions.first, case .workflow(let w) = d.body else {
            throw ProgramTestError(description: "\(report.errors)")
        }
        return WorkflowProgram(w.steps)
    }
    struct ProgramTestError: Error, CustomStringConvertible { let description: String }

    static let nested = """
        kind: workflow
        name: w
        trigger:
          event: X
        steps:
          - send: a
          - if: 'contact.score > 1'
            then:
              - send: b
              - if: 'contact.score > 2'
                then:
                  - send: c
            else:
              - wait: 1h
          - send: d
        """

    @Test func pathsRoundTripThroughText() {
        for text in ["0", "3", "1.then.0", "1.else.0", "1.then.1.then.0"] {
            #expect(StepPath(text)?.description == text)
        }
        for bad in ["", "x", "1.then", "1.maybe.0", "-1", "1.then.-2"] { #expect(StepPath(bad) == nil, "\(bad)") }
    }

    @Test func nextLeavesABranchAfterItsIf() throws {
        let p = try Self.program(Self.nested)
        #expect(p.start?.description == "0")
        #expect(p.next(after: StepPath("0")!)?.description == "1")
        #expect(p.enter(.then, of: StepPath("1")!)?.description == "1.then.0")
        #expect(p.enter(.else, of: StepPath("1")!)?.description == "1.else.0")
        #expect(p.next(after: StepPath("1.then.0")!)?.description == "1.then.1")
        #expect(p.enter(.then, of: StepPath("1.then.1")!)?.description == "1.then.1.then.0")
        // An empty else continues after the inner if, which is the end of the outer then: after the outer if.
        #expect(p.enter(.else, of: StepPath("1.then.1")!)?.description == "2")
        #expect(p.next(after: StepPath("1.then.1.then.0")!)?.description == "2")
        #expect(p.next(after: StepPath("1.else.0")!)?.description == "2")
        #expect(p.next(after: StepPath("2")!) == nil)
        #expect(p.step(at: StepPath("9")!) == nil)
        #expect(p.step(at: StepPath("0.then.0")!) == nil)
    }

    @Test func stepsAreNumberedInReadingOrder() throws {
        let p = try Self.program(Self.nested)
        let numbered = p.numbered.map { "\($0.number) \($0.path) \($0.step.label)" }
        #expect(numbered == [
            "1 0 send a", "2 1 if contact.score > 1", "3 1.then.0 send b", "4 1.then.1 if contact.score > 2",
            "5 1.then.1.then.0 send c", "6 1.else.0 wait 1h", "7 2 send d",
        ])
        #expect(p.number(of: StepPath("1.else.0")!) == 6)
    }

    @Test func theWelcomeSeriesNumbersMatchTheDocs() throws {
        let p = try Self.program("""
            kind: workflow
            name: welcome-series
            trigger:
              event: Signed Up
            steps:
              - send: a
              - wait: 2d
              - send: b
              - wait: 3d
              - if: 'count("Order Completed") == 0'
                then:
                  - send: c
            """)
        #expect(p.numbered.map(\.number) == [1, 2, 3, 4, 5, 6])
        #expect(p.numbered.last?.step.label == "send c")
        #expect(p.numbered[1].step.label == "wait 2d")
    }
}
