import Foundation

/// Loads definition files (pure: the caller reads the files and passes the environment).
///
/// ```swift
/// var loader = DefinitionLoader(environment: ProcessInfo.processInfo.environment)
/// loader.load(file: "examples/workflows.yaml", text: yaml)
/// let report = loader.finish(stored: [.template: ["welcome-1"]])
/// report.diagnostics   // file:line:column: message, errors and warnings
/// report.definitions   // typed, with canonical spec + checksum, in apply order
/// ```
public struct DefinitionLoader: Sendable {
    public let environment: [String: String]
    public private(set) var definitions: [Definition] = []
    public private(set) var diagnostics: [DefinitionDiagnostic] = []
    /// Documents read (including ones with errors).
    public private(set) var documentCount = 0
    private var references: [Reference] = []
    private var firstSeen: [String: String] = [:]

    /// A name one definition uses that another must define (checked across all files in `finish`).
    struct Reference: Sendable {
        let kind: DefinitionKind
        let name: String
        let file: String
        let position: DefinitionPosition?
        let usage: String
    }

    public init(environment: [String: String] = [:]) {
        self.environment = environment
    }

    /// Reads every document of one file.
    public mutating func load(file: String, text: String) {
        var reader = YAMLReader(file: file, text: text, environment: environment)
        let documents = reader.documents()
        diagnostics += reader.diagnostics
        let decoder = DefinitionDecoder(file: file)
        for document in documents {
            if case .scalar(_, .null, _, _, _) = document { continue }
            documentCount += 1
            guard let definition = decoder.decode(document) else { continue }
            if let first = firstSeen[definition.key] {
                decoder.error("\(definition.key) is defined twice (first at \(first))", at: document.position)
                continue
            }
            firstSeen[definition.key] = definition.source
            definitions.append(definition)
            collectReferences(definition, document: document, file: file)
        }
        diagnostics += decoder.diagnostics
    }

    /// Checks references across everything loaded: every `send:` names a template and every segment named by a
    /// trigger, `audience:` or `in_segment(...)` exists, either in the files or in `stored` (names already applied,
    /// by kind). Unknown templates and segments are errors at the step or trigger that names them. Returns the
    /// definitions in apply order (settings, providers, templates, scoring, segments, lifecycle, workflows).
    public func finish(stored: [DefinitionKind: Set<String>] = [:]) -> DefinitionReport {
        var diagnostics = self.diagnostics
        var known: [DefinitionKind: Set<String>] = stored
        for d in definitions { known[d.kind, default: []].insert(d.name) }
        for ref in references where !(known[ref.kind]?.contains(ref.name) ?? false) {
            let candidates = Array(known[ref.kind] ?? [])
            let hint = suggestion(for: ref.name, among: candidates).map { "; did you mean '\($0)'?" } ?? ""
            let p = ref.position ?? DefinitionPosition(line: 1, column: 1)
            diagnostics.append(DefinitionDiagnostic(file: ref.file, line: p.line, column: p.column,
                                                    message: "\(ref.usage): unknown \(ref.kind.rawValue) '\(ref.name)' (not in these files nor applied before)\(hint)"))
        }
        diagnostics += segmentCycles()
        let sorted = definitions.enumerated().sorted { a, b in
            a.element.kind != b.element.kind ? a.element.kind < b.element.kind : a.offset < b.offset
        }.map(\.element)
        diagnostics.sort { ($0.file, $0.line, $0.column) < ($1.file, $1.line, $1.column) }
        return DefinitionReport(definitions: sorted, diagnostics: diagnostics, documentCount: documentCount)
    }

    /// Segments that depend on themselves through `in_segment` (a → b → a): membership could never settle.
    private func segmentCycles() -> [DefinitionDiagnostic] {
        var edges: [String: [String]] = [:]
        var sources: [String: String] = [:]
        for d in definitions {
            guard case .segment(let s) = d.body else { continue }
            edges[s.name] = s.where.referencedSegments.sorted()
            sources[s.name] = d.source
        }
        var state: [String: Bool] = [:]   // false: on the path, true: done
        var reported = Set<String>()
        var diagnostics: [DefinitionDiagnostic] = []
        func visit(_ name: String, _ path: [String]) {
            if state[name] == true { return }
            if state[name] == false {
                let cycle = Array(path[path.firstIndex(of: name)!...]) + [name]
                guard reported.insert(cycle.dropLast().sorted().joined(separator: ",")).inserted else { return }
                let source = sources[name] ?? "?:1"
                let colon = source.lastIndex(of: ":")
                let file = colon.map { String(source[..<$0]) } ?? source
                let line = colon.flatMap { Int(source[source.index(after: $0)...]) } ?? 1
                diagnostics.append(DefinitionDiagnostic(file: file, line: line, column: 1,
                                                        message: "segment '\(name)' depends on itself through in_segment: \(cycle.joined(separator: " → "))"))
                return
            }
            state[name] = false
            for next in edges[name] ?? [] where edges[next] != nil { visit(next, path + [name]) }
            state[name] = true
        }
        for name in edges.keys.sorted() { visit(name, []) }
        return diagnostics
    }

    // MARK: references

    private mutating func collectReferences(_ definition: Definition, document: DNode, file: String) {
        func add(_ kind: DefinitionKind, _ name: String, _ node: DNode?, _ usage: String) {
            references.append(Reference(kind: kind, name: name, file: file, position: node?.position ?? document.position, usage: usage))
        }
        func field(_ node: DNode?, _ key: String) -> DNode? {
            guard case .mapping(let pairs, _)? = node else { return nil }
            return pairs.first { $0.key == key }?.value
        }
        func segments(of condition: Condition?, _ node: DNode?, _ usage: String) {
            for s in (condition?.referencedSegments ?? []).sorted() { add(.segment, s, node, usage) }
        }
        switch definition.body {
        case .segment(let s):
            segments(of: s.where, field(document, "where"), "in_segment")
        case .template(let t):
            if let p = t.provider { add(.provider, p, field(document, "provider"), "provider") }
        case .workflow(let w):
            let triggerNode = field(document, "trigger")
            switch w.trigger {
            case .event(_, let condition, let audience):
                segments(of: condition, field(triggerNode, "where"), "in_segment")
                if let audience { add(.segment, audience, field(triggerNode, "audience"), "audience") }
            case .when(let condition): segments(of: condition, field(triggerNode, "when"), "in_segment")
            case .segmentEntered(let s): add(.segment, s, field(triggerNode, "segment_entered"), "segment_entered")
            case .segmentExited(let s): add(.segment, s, field(triggerNode, "segment_exited"), "segment_exited")
            case .date: break
            }
            segments(of: w.exitWhen, field(document, "exit_when"), "in_segment")
            func walk(_ steps: [WorkflowDefinition.Step], _ nodes: DNode?) {
                guard case .sequence(let items, _)? = nodes else { return }
                // Steps that failed to decode were dropped, but then the definition has errors and is not here.
                for (step, node) in zip(steps, items) {
                    switch step {
                    case .send(let template, let provider):
                        add(.template, template, field(node, "send"), "send")
                        if let provider { add(.provider, provider, field(node, "provider"), "provider") }
                    case .branch(let condition, let thenSteps, let elseSteps):
                        segments(of: condition, field(node, "if"), "in_segment")
                        walk(thenSteps, field(node, "then"))
                        walk(elseSteps, field(node, "else"))
                    default: break
                    }
                }
            }
            walk(w.steps, field(document, "steps"))
        default: break
        }
    }
}

/// What loading a set of files found.
public struct DefinitionReport: Sendable {
    /// Definitions without errors, in apply order.
    public let definitions: [Definition]
    /// Errors and warnings, sorted by file and position.
    public let diagnostics: [DefinitionDiagnostic]
    public let documentCount: Int

    public var errors: [DefinitionDiagnostic] { diagnostics.filter { $0.severity == .error } }
    public var warnings: [DefinitionDiagnostic] { diagnostics.filter { $0.severity == .warning } }
    public var isValid: Bool { errors.isEmpty }
}

extension DefinitionLoader {
    /// Convenience: one file's text, no cross-file references to stored definitions.
    public static func load(file: String, text: String, environment: [String: String] = [:]) -> DefinitionReport {
        var loader = DefinitionLoader(environment: environment)
        loader.load(file: file, text: text)
        return loader.finish()
    }

    /// Rebuilds a typed definition from a stored spec (positions are then unknown: messages say 1:1).
    public static func decode(spec: Value, source: String = "stored") -> Definition? {
        DefinitionDecoder(file: source).decode(DNode(spec))
    }
}
