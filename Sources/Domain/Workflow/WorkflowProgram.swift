/// Where an enrollment is in a workflow's step tree: the index in the top-level list, then for each `if` entered,
/// the branch taken and the index in that branch. Stored as text: `"3"`, `"4.then.0"`, `"4.else.1.then.0"`.
public struct StepPath: Hashable, Sendable, CustomStringConvertible {
    public enum Branch: String, Sendable, Hashable { case then, `else` }
    /// The index in the top-level list.
    public var index: Int
    /// Each branch entered on the way down: (branch of the `if` at the enclosing level, index in that branch).
    public var nested: [(Branch, Int)]

    public init(index: Int, nested: [(Branch, Int)] = []) {
        self.index = index
        self.nested = nested
    }

    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard let first = parts.first, let i = Int(first), i >= 0, parts.count % 2 == 1 else { return nil }
        var nested: [(Branch, Int)] = []
        var k = 1
        while k < parts.count {
            guard let b = Branch(rawValue: String(parts[k])), let j = Int(parts[k + 1]), j >= 0 else { return nil }
            nested.append((b, j))
            k += 2
        }
        self.init(index: i, nested: nested)
    }

    public var description: String {
        ([String(index)] + nested.flatMap { [$0.0.rawValue, String($0.1)] }).joined(separator: ".")
    }

    public static func == (a: StepPath, b: StepPath) -> Bool { a.description == b.description }
    public func hash(into hasher: inout Hasher) { hasher.combine(description) }
}

/// A workflow's steps as an addressable program: which step is at a path, the first step, and the step after
/// one (the end of a branch continues after its `if`). Pure; the runner keeps the path in the enrollment.
public struct WorkflowProgram: Sendable {
    public let steps: [WorkflowDefinition.Step]

    public init(_ steps: [WorkflowDefinition.Step]) { self.steps = steps }

    /// The first step, or nil for an empty workflow.
    public var start: StepPath? { steps.isEmpty ? nil : StepPath(index: 0) }

    /// The list a path's last index points into, and that index.
    private func list(containing path: StepPath) -> [WorkflowDefinition.Step]? {
        var list = steps
        var index = path.index
        for (branch, j) in path.nested {
            guard index < list.count, case .branch(_, let then, let otherwise) = list[index] else { return nil }
            list = branch == .then ? then : otherwise
            index = j
        }
        return list
    }

    private func lastIndex(_ path: StepPath) -> Int { path.nested.last?.1 ?? path.index }

    private func replacingLastIndex(_ path: StepPath, with i: Int) -> StepPath {
        var p = path
        if p.nested.isEmpty { p.index = i } else { p.nested[p.nested.count - 1].1 = i }
        return p
    }

    /// The step at `path`, or nil when the path does not exist in this program.
    public func step(at path: StepPath) -> WorkflowDefinition.Step? {
        guard let list = list(containing: path) else { return nil }
        let i = lastIndex(path)
        return i < list.count ? list[i] : nil
    }

    /// The step that runs after the one at `path` when it does not branch: the next in its list, or (at the end of
    /// a branch) the step after the enclosing `if`; nil when the workflow is complete.
    public func next(after path: StepPath) -> StepPath? {
        guard let list = list(containing: path) else { return nil }
        let i = lastIndex(path) + 1
        if i < list.count { return replacingLastIndex(path, with: i) }
        guard !path.nested.isEmpty else { return nil }
        var parent = path
        parent.nested.removeLast()
        return next(after: parent)
    }

    /// The first step of a branch of the `if` at `path`; an empty branch continues after the `if`.
    public func enter(_ branch: StepPath.Branch, of path: StepPath) -> StepPath? {
        guard case .branch(_, let then, let otherwise)? = step(at: path) else { return next(after: path) }
        let list = branch == .then ? then : otherwise
        if list.isEmpty { return next(after: path) }
        var p = path
        p.nested.append((branch, 0))
        return p
    }

    /// Every step in reading order with its 1-based number (what reports and `source.step` call the step).
    public var numbered: [(number: Int, path: StepPath, step: WorkflowDefinition.Step)] {
        var out: [(Int, StepPath, WorkflowDefinition.Step)] = []
        func walk(_ list: [WorkflowDefinition.Step], prefix: StepPath?, branch: StepPath.Branch?) {
            for (i, step) in list.enumerated() {
                var path: StepPath
                if let prefix, let branch {
                    path = prefix
                    path.nested.append((branch, i))
                } else {
                    path = StepPath(index: i)
                }
                out.append((out.count + 1, path, step))
                if case .branch(_, let then, let otherwise) = step {
                    walk(then, prefix: path, branch: .then)
                    walk(otherwise, prefix: path, branch: .else)
                }
            }
        }
        walk(steps, prefix: nil, branch: nil)
        return out.map { (number: $0.0, path: $0.1, step: $0.2) }
    }

    /// The 1-based number of the step at `path` (0 if it does not exist).
    public func number(of path: StepPath) -> Int {
        numbered.first(where: { $0.path == path })?.number ?? 0
    }
}

extension WorkflowDefinition.Step {
    /// A short human label: `send welcome-1`, `wait 2d`, `if count("Order Completed") == 0`, `tag vip`.
    public var label: String {
        switch self {
        case .send(let template, let provider): return "send \(template)" + (provider.map { " via \($0)" } ?? "")
        case .wait(let seconds): return "wait \(DurationLabel.text(seconds))"
        case .branch(let condition, _, _): return "if \(condition.source)"
        case .tag(let t): return "tag \(t)"
        case .untag(let t): return "untag \(t)"
        case .set(let values): return "set " + values.keys.sorted().joined(separator: ", ")
        case .score(let n): return "score \(n >= 0 ? "+" : "")\(Value.format(number: n))"
        }
    }
}

public enum DurationLabel {
    public static func text(_ seconds: Double) -> String {
        for (unit, size) in [("d", 86_400.0), ("h", 3_600.0), ("m", 60.0)] where seconds >= size && seconds.truncatingRemainder(dividingBy: size) == 0 {
            return "\(Int(seconds / size))\(unit)"
        }
        return "\(Value.format(number: seconds))s"
    }
}
