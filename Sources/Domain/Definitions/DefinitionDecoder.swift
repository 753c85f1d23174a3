import Foundation

/// A mapping's fields, looked up by key, with the key positions for messages.
struct Fields {
    let pairs: [(key: String, keyAt: DefinitionPosition?, value: DNode)]
    let at: DefinitionPosition?
    subscript(_ key: String) -> DNode? { pairs.first { $0.key == key }?.value }
    func has(_ key: String) -> Bool { pairs.contains { $0.key == key } }
}

/// Turns `DNode` documents into typed definitions, collecting every problem it can find.
final class DefinitionDecoder {
    let file: String
    var diagnostics: [DefinitionDiagnostic] = []

    init(file: String) { self.file = file }

    func error(_ message: String, at position: DefinitionPosition?) {
        let p = position ?? DefinitionPosition(line: 1, column: 1)
        diagnostics.append(DefinitionDiagnostic(file: file, line: p.line, column: p.column, message: message))
    }

    // MARK: primitives

    func mapping(_ node: DNode, _ what: String, allowed: [String], required: [String] = []) -> Fields? {
        guard case .mapping(let pairs, let at) = node else {
            error("\(what) must be a mapping, found \(node.typeName)", at: node.position)
            return nil
        }
        var suggested: Set<String> = []
        for pair in pairs where !allowed.contains(pair.key) {
            let guess = suggestion(for: pair.key, among: allowed)
            if let guess { suggested.insert(guess) }
            let hint = guess.map { "; did you mean '\($0)'?" } ?? "; expected one of: \(allowed.joined(separator: ", "))"
            error("unknown key '\(pair.key)' in \(what)\(hint)", at: pair.keyAt)
        }
        // A misspelt required key is reported once, as the unknown key with its suggestion.
        for key in required where !pairs.contains(where: { $0.key == key }) && !suggested.contains(key) {
            error("\(what) is missing required key '\(key)'", at: at)
        }
        return Fields(pairs: pairs, at: at)
    }

    func string(_ node: DNode?, _ field: String) -> String? {
        guard let node else { return nil }
        guard case .scalar(let text, let kind, _, _, _) = node, kind != .null else {
            error("'\(field)' must be a string, found \(node.typeName)", at: node.position)
            return nil
        }
        return text
    }

    func nonEmptyString(_ node: DNode?, _ field: String) -> String? {
        guard let s = string(node, field) else { return nil }
        if s.trimmingCharacters(in: .whitespaces).isEmpty {
            error("'\(field)' must not be empty", at: node?.position)
            return nil
        }
        return s
    }

    func name(_ node: DNode?, _ field: String = "name") -> String? {
        guard let s = nonEmptyString(node, field) else { return nil }
        if s.range(of: #"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"#, options: .regularExpression) == nil {
            error("'\(field)' must be letters, digits, '-', '_' or '.' (found \"\(s)\")", at: node?.position)
            return nil
        }
        return s
    }

    func int(_ node: DNode?, _ field: String, minimum: Int? = nil) -> Int? {
        guard let node else { return nil }
        guard case .scalar(let text, .int, _, _, _) = node, let n = Int(text.replacingOccurrences(of: "+", with: "")) else {
            error("'\(field)' must be an integer, found \(node.typeName)", at: node.position)
            return nil
        }
        if let minimum, n < minimum {
            error("'\(field)' must be at least \(minimum), found \(n)", at: node.position)
            return nil
        }
        return n
    }

    func number(_ node: DNode?, _ field: String) -> Double? {
        guard let node else { return nil }
        guard case .scalar(let text, let kind, _, _, _) = node, kind == .int || kind == .float, let n = Double(text) else {
            error("'\(field)' must be a number, found \(node.typeName)", at: node.position)
            return nil
        }
        return n
    }

    func choice<E: RawRepresentable & CaseIterable>(_ node: DNode?, _ field: String, _ type: E.Type) -> E? where E.RawValue == String {
        guard let text = string(node, field) else { return nil }
        if let value = E(rawValue: text) { return value }
        let options = E.allCases.map(\.rawValue)
        let hint = suggestion(for: text, among: options).map { "; did you mean '\($0)'?" } ?? ""
        error("'\(field)' must be one of \(options.joined(separator: ", ")), found \"\(text)\"\(hint)", at: node?.position)
        return nil
    }

    /// `30m`, `6h`, `2d`, `1w`, `1h30m` → seconds.
    func duration(_ node: DNode?, _ field: String) -> Double? {
        guard let text = string(node, field) else { return nil }
        guard let seconds = ExpressionTime.parseDuration(text.trimmingCharacters(in: .whitespaces)), seconds > 0 else {
            error("'\(field)': invalid duration \"\(text)\" (use e.g. 30s, 15m, 6h, 2d, 1w, 1h30m)", at: node?.position)
            return nil
        }
        return seconds
    }

    func clock(_ node: DNode?, _ field: String) -> ClockTime? {
        guard let text = string(node, field) else { return nil }
        guard let time = ClockTime(text) else {
            error("'\(field)' must be a time of day as \"HH:MM\" (24-hour), found \"\(text)\"", at: node?.position)
            return nil
        }
        return time
    }

    /// An expression; its errors point inside the expression's text in the file.
    func condition(_ node: DNode?, _ field: String, scope: ExpressionScope) -> Condition? {
        guard let node, let text = string(node, field) else { return nil }
        do {
            return try Condition(text, scope: scope)
        } catch {
            let at = node.position(ofTextLine: error.line, column: error.column)
            self.error("'\(field)': \(error.message)", at: at)
            return nil
        }
    }

    /// A Liquid template; its syntax errors point inside the template's text in the file.
    func liquid(_ node: DNode?, _ field: String) -> LiquidTemplate? {
        guard let node, let text = string(node, field) else { return nil }
        do {
            return try LiquidTemplate.parse(text)
        } catch {
            if let e = error as? LiquidError {
                self.error("'\(field)': \(e.message)", at: node.position(ofTextLine: e.line, column: e.column))
            } else {
                self.error("'\(field)': \(error)", at: node.position)
            }
            return nil
        }
    }

    func list(_ node: DNode?, _ field: String) -> [DNode]? {
        guard let node else { return nil }
        guard case .sequence(let items, _) = node else {
            error("'\(field)' must be a list, found \(node.typeName)", at: node.position)
            return nil
        }
        return items
    }

    /// `N/s`, `N/m`, `N/h`, or `N/<duration>` (`3/1d`).
    func rate(_ node: DNode?, _ field: String, example: String) -> (count: Int, seconds: Double)? {
        guard let text = string(node, field) else { return nil }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count == 2, let count = Int(parts[0].trimmingCharacters(in: .whitespaces)), count > 0 {
            var unit = parts[1].trimmingCharacters(in: .whitespaces)
            if ["s", "m", "h", "d", "w"].contains(unit) { unit = "1" + unit }
            if let seconds = ExpressionTime.parseDuration(unit), seconds > 0 { return (count, seconds) }
        }
        error("'\(field)' must look like \(example), found \"\(text)\"", at: node?.position)
        return nil
    }

    // MARK: documents

    /// One document; nil when it has errors (they are in `diagnostics`).
    func decode(_ document: DNode) -> Definition? {
        let before = diagnostics.count
        guard case .mapping(let pairs, let at) = document else {
            if case .scalar(_, .null, _, _, _) = document { return nil } // an empty document (e.g. a trailing ---)
            error("a definition must be a mapping with a 'kind:', found \(document.typeName)", at: document.position)
            return nil
        }
        guard let kindNode = pairs.first(where: { $0.key == "kind" })?.value else {
            error("missing 'kind:' (one of \(DefinitionKind.allCases.map(\.rawValue).joined(separator: ", ")))", at: at)
            return nil
        }
        guard let kind = choice(kindNode, "kind", DefinitionKind.self) else { return nil }
        let source = "\(file):\(at?.line ?? 1)"
        var spec = document.value
        let result: (String, DefinitionBody)?
        switch kind {
        case .settings: result = settings(document).map { ("default", .settings($0)) }
        case .provider: result = provider(document).map { ($0.name, .provider($0)) }
        case .template:
            result = template(document).map { ($0.name, .template($0)) }
            if case .object(var o) = spec, o["category"] == nil { o["category"] = .string("marketing"); spec = .object(o) }
        case .scoring: result = scoring(document).map { ($0.name, .scoring($0)) }
        case .segment: result = segment(document).map { ($0.name, .segment($0)) }
        case .lifecycle: result = lifecycle(document).map { ($0.name, .lifecycle($0)) }
        case .workflow: result = workflow(document).map { ($0.name, .workflow($0)) }
        }
        guard diagnostics.count == before, let (name, body) = result else { return nil }
        return Definition(kind: kind, name: name, body: body, spec: spec, source: source)
    }

    func settings(_ node: DNode) -> SettingsDefinition? {
        guard let f = mapping(node, "settings", allowed: ["kind", "name", "timezone", "from", "quiet_hours", "frequency_caps"]) else { return nil }
        if let n = f["name"] { _ = name(n) }
        var timezone = "UTC"
        if let tz = string(f["timezone"], "timezone") {
            if TimeZone(identifier: tz) == nil {
                error("'timezone' must be an IANA time zone such as Europe/Paris, found \"\(tz)\"", at: f["timezone"]?.position)
            }
            timezone = tz
        }
        var quiet: SettingsDefinition.QuietHours?
        if let q = f["quiet_hours"], let qf = mapping(q, "quiet_hours", allowed: ["from", "to"], required: ["from", "to"]),
           let from = clock(qf["from"], "from"), let to = clock(qf["to"], "to") {
            quiet = .init(from: from, to: to)
        }
        var caps: [Channel: SettingsDefinition.FrequencyCap] = [:]
        if let c = f["frequency_caps"], let cf = mapping(c, "frequency_caps", allowed: Channel.allCases.map(\.rawValue)) {
            for pair in cf.pairs {
                guard let channel = Channel(rawValue: pair.key), let r = rate(pair.value, pair.key, example: "3/1d") else { continue }
                caps[channel] = .init(count: r.count, periodSeconds: r.seconds)
            }
        }
        return SettingsDefinition(timezone: timezone, from: string(f["from"], "from"), quietHours: quiet, frequencyCaps: caps)
    }

    func provider(_ node: DNode) -> ProviderDefinition? {
        guard let f = mapping(node, "provider", allowed: ["kind", "name", "channel", "type", "url", "from", "username_env",
                                                          "password_env", "rate_limit", "batch"],
                              required: ["name", "channel", "type", "url"]) else { return nil }
        let name = name(f["name"])
        let channel = choice(f["channel"], "channel", Channel.self)
        let type = choice(f["type"], "type", ProviderDefinition.ProviderType.self)
        let url = nonEmptyString(f["url"], "url")
        if let url, let type {
            let schemes = type == .smtp ? ["smtp://", "smtps://"] : ["http://", "https://"]
            if !schemes.contains(where: { url.lowercased().hasPrefix($0) }) {
                error("'url' of a \(type.rawValue) provider must start with \(schemes.joined(separator: " or ")), found \"\(url)\"", at: f["url"]?.position)
            }
        }
        for key in ["username_env", "password_env"] {
            if let v = string(f[key], key), v.range(of: #"^[A-Za-z_][A-Za-z0-9_]*$"#, options: .regularExpression) == nil {
                error("'\(key)' is the *name* of an environment variable (e.g. NURTURE_SMTP_PASSWORD), found \"\(v)\"", at: f[key]?.position)
            }
        }
        var rateLimit: ProviderDefinition.RateLimit?
        if let r = f["rate_limit"] {
            if let parsed = rate(r, "rate_limit", example: "2000/s or 100/m") { rateLimit = .init(count: parsed.count, perSeconds: parsed.seconds) }
        }
        let batch = int(f["batch"], "batch", minimum: 1)
        guard let name, let channel, let type, let url else { return nil }
        return ProviderDefinition(name: name, channel: channel, type: type, url: url, from: string(f["from"], "from"),
                                  usernameEnv: string(f["username_env"], "username_env"),
                                  passwordEnv: string(f["password_env"], "password_env"), rateLimit: rateLimit, batch: batch)
    }

    func template(_ node: DNode) -> TemplateDefinition? {
        guard let f = mapping(node, "template", allowed: ["kind", "name", "channel", "category", "provider", "from", "subject",
                                                          "html", "text", "body", "tracking", "utm"],
                              required: ["name", "channel"]) else { return nil }
        let name = name(f["name"])
        let channel = choice(f["channel"], "channel", Channel.self)
        let category = f["category"].map { choice($0, "category", TemplateDefinition.Category.self) } ?? .marketing
        let subject = liquid(f["subject"], "subject")
        let html = liquid(f["html"], "html")
        let text = liquid(f["text"], "text")
        let body = liquid(f["body"], "body")
        if let channel {
            switch channel {
            case .email:
                if !f.has("subject") { error("an email template needs 'subject'", at: f.at) }
                if !f.has("html") && !f.has("text") { error("an email template needs 'html' or 'text' (or both)", at: f.at) }
                if f.has("body") { error("'body' is for webhook templates; an email template has subject/html/text", at: f.pairs.first { $0.key == "body" }?.keyAt) }
            case .sms, .push:
                if !f.has("text") { error("a\(channel == .sms ? "n sms" : " push") template needs 'text'", at: f.at) }
                for key in ["html", "body"] where f.has(key) {
                    error("'\(key)' is not used by \(channel.rawValue) templates (use 'text')", at: f.pairs.first { $0.key == key }?.keyAt)
                }
            case .webhook:
                if !f.has("body") { error("a webhook template needs 'body' (the request body)", at: f.at) }
            }
        }
        let tracking = trackingOptions(f)
        guard let name, let channel, let category else { return nil }
        var template = TemplateDefinition(name: name, channel: channel, category: category, provider: f["provider"].flatMap { self.name($0, "provider") },
                                          from: string(f["from"], "from"), subject: subject, html: html, text: text, body: body)
        (template.trackOpens, template.trackClicks, template.utm) = tracking
        template.mentionsPreferencesURL = [subject, html, text, body].contains { $0?.source.contains("preferences_url") == true }
        return template
    }

    /// `tracking: false | true | {opens: BOOL, clicks: BOOL}` and `utm: {source: .., medium: .., campaign: .., term: .., content: ..}`.
    func trackingOptions(_ f: Fields) -> (opens: Bool, clicks: Bool, utm: [String: String]) {
        var opens = true, clicks = true
        func flag(_ node: DNode, _ field: String) -> Bool? {
            guard case .scalar(let text, .bool, _, _, _) = node else {
                error("'\(field)' must be true or false, found \(node.typeName)", at: node.position)
                return nil
            }
            return ["true", "True", "TRUE"].contains(text)
        }
        if let t = f["tracking"] {
            if case .mapping = t {
                if let tf = mapping(t, "tracking", allowed: ["opens", "clicks"]) {
                    if let o = tf["opens"] { opens = flag(o, "opens") ?? true }
                    if let c = tf["clicks"] { clicks = flag(c, "clicks") ?? true }
                }
            } else if let on = flag(t, "tracking") {
                opens = on; clicks = on
            }
        }
        var utm: [String: String] = [:]
        if let u = f["utm"], let uf = mapping(u, "utm", allowed: ["source", "medium", "campaign", "term", "content"]) {
            for pair in uf.pairs { if let v = string(pair.value, pair.key) { utm["utm_" + pair.key] = v } }
        }
        return (opens, clicks, utm)
    }

    func scoring(_ node: DNode) -> ScoringDefinition? {
        guard let f = mapping(node, "scoring", allowed: ["kind", "name", "rules", "decay"], required: ["name", "rules"]) else { return nil }
        let name = name(f["name"])
        var rules: [ScoringDefinition.Rule] = []
        for item in list(f["rules"], "rules") ?? [] {
            guard let rf = mapping(item, "scoring rule", allowed: ["when", "points"], required: ["when", "points"]) else { continue }
            if let when = condition(rf["when"], "when", scope: .event), let points = number(rf["points"], "points") {
                rules.append(.init(when: when, points: points))
            }
        }
        var halfLife: Double?
        if let d = f["decay"], let df = mapping(d, "decay", allowed: ["half_life"], required: ["half_life"]) {
            halfLife = duration(df["half_life"], "half_life")
        }
        guard let name else { return nil }
        return ScoringDefinition(name: name, rules: rules, decayHalfLifeSeconds: halfLife)
    }

    func segment(_ node: DNode) -> SegmentDefinition? {
        guard let f = mapping(node, "segment", allowed: ["kind", "name", "description", "where"], required: ["name", "where"]) else { return nil }
        let name = name(f["name"])
        let condition = condition(f["where"], "where", scope: .contact)
        guard let name, let condition else { return nil }
        return SegmentDefinition(name: name, description: string(f["description"], "description"), where: condition)
    }

    func lifecycle(_ node: DNode) -> LifecycleDefinition? {
        guard let f = mapping(node, "lifecycle", allowed: ["kind", "name", "stages", "initial", "rules"], required: ["stages", "initial"]) else { return nil }
        let lifecycleName = f["name"].map { name($0) } ?? "default"
        var stages: [String] = []
        for item in list(f["stages"], "stages") ?? [] {
            guard let stage = name(item, "stage") else { continue }
            if stages.contains(stage) { error("stage '\(stage)' is listed twice", at: item.position) }
            stages.append(stage)
        }
        func checkStage(_ node: DNode?, _ field: String) -> String? {
            guard let stage = string(node, field) else { return nil }
            if !stages.contains(stage) {
                let hint = suggestion(for: stage, among: stages).map { "; did you mean '\($0)'?" } ?? ""
                error("'\(field)': unknown stage '\(stage)' (stages: \(stages.joined(separator: ", ")))\(hint)", at: node?.position)
                return nil
            }
            return stage
        }
        let initial = checkStage(f["initial"], "initial")
        var rules: [LifecycleDefinition.Rule] = []
        for item in list(f["rules"], "rules") ?? [] {
            guard let rf = mapping(item, "lifecycle rule", allowed: ["to", "when"], required: ["to", "when"]) else { continue }
            let to = checkStage(rf["to"], "to")
            if let when = condition(rf["when"], "when", scope: .event), let to { rules.append(.init(to: to, when: when)) }
        }
        guard let lifecycleName, let initial else { return nil }
        return LifecycleDefinition(name: lifecycleName, stages: stages, initial: initial, rules: rules)
    }

    // MARK: workflow

    static let triggerKinds = ["event", "when", "segment_entered", "segment_exited", "date"]
    static let stepKinds = ["send", "wait", "if", "tag", "untag", "set", "score"]

    func workflow(_ node: DNode) -> WorkflowDefinition? {
        guard let f = mapping(node, "workflow", allowed: ["kind", "name", "description", "trigger", "reentry", "exit_when", "steps"],
                              required: ["name", "trigger", "steps"]) else { return nil }
        let name = name(f["name"])
        let trigger = f["trigger"].flatMap(trigger)
        var reentry = WorkflowDefinition.Reentry.never
        if let r = f["reentry"], let text = string(r, "reentry") {
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            if trimmed == "never" { reentry = .never } else if trimmed == "always" { reentry = .always } else if trimmed.hasPrefix("after "),
                let seconds = ExpressionTime.parseDuration(String(trimmed.dropFirst(6)).trimmingCharacters(in: .whitespaces)), seconds > 0 {
                reentry = .after(seconds: seconds)
            } else {
                error("'reentry' must be never, always or after DURATION (e.g. \"after 30d\"), found \"\(text)\"", at: r.position)
            }
        }
        let exitWhen = condition(f["exit_when"], "exit_when", scope: .event)
        let steps = self.steps(f["steps"], "steps")
        if let s = f["steps"], case .sequence(let items, _) = s, items.isEmpty { error("'steps' must not be empty", at: s.position) }
        guard let name, let trigger else { return nil }
        return WorkflowDefinition(name: name, description: string(f["description"], "description"), trigger: trigger,
                                  reentry: reentry, exitWhen: exitWhen, steps: steps)
    }

    func trigger(_ node: DNode) -> WorkflowDefinition.Trigger? {
        guard let f = mapping(node, "trigger", allowed: Self.triggerKinds + ["where", "audience", "at"]) else { return nil }
        let present = Self.triggerKinds.filter { f.has($0) }
        guard present.count == 1, let kind = present.first else {
            error(present.isEmpty ? "trigger needs one of: \(Self.triggerKinds.joined(separator: ", "))"
                  : "trigger must have exactly one of \(Self.triggerKinds.joined(separator: ", ")); found \(present.joined(separator: " and "))", at: f.at)
            return nil
        }
        func only(_ keys: [String], with what: String) {
            for pair in f.pairs where ["where", "audience", "at"].contains(pair.key) && !keys.contains(pair.key) {
                error("'\(pair.key)' is not allowed with a \(what) trigger", at: pair.keyAt)
            }
        }
        switch kind {
        case "event":
            only(["where", "audience"], with: "event")
            let event = nonEmptyString(f["event"], "event")
            let whereCondition = condition(f["where"], "where", scope: .event)
            let audience = f["audience"].flatMap { name($0, "audience") }
            guard let event else { return nil }
            if f.has("where") && whereCondition == nil { return nil }
            return .event(name: event, where: whereCondition, audience: audience)
        case "when":
            only([], with: "when")
            return condition(f["when"], "when", scope: .contact).map { .when($0) }
        case "segment_entered":
            only([], with: "segment_entered")
            return name(f["segment_entered"], "segment_entered").map { .segmentEntered($0) }
        case "segment_exited":
            only([], with: "segment_exited")
            return name(f["segment_exited"], "segment_exited").map { .segmentExited($0) }
        default:
            only(["at"], with: "date")
            guard let text = string(f["date"], "date") else { return nil }
            guard text.hasPrefix("contact."), text.count > 8, !text.dropFirst(8).contains(" ") else {
                error("'date' must name a contact attribute, e.g. contact.birthday, found \"\(text)\"", at: f["date"]?.position)
                return nil
            }
            let at = f["at"].map { clock($0, "at") } ?? ClockTime(hour: 9, minute: 0)
            guard let at else { return nil }
            return .date(attribute: String(text.dropFirst(8)), at: at)
        }
    }

    func steps(_ node: DNode?, _ field: String) -> [WorkflowDefinition.Step] {
        (list(node, field) ?? []).compactMap(step)
    }

    func step(_ node: DNode) -> WorkflowDefinition.Step? {
        guard let f = mapping(node, "step", allowed: Self.stepKinds + ["then", "else", "provider"]) else { return nil }
        let present = Self.stepKinds.filter { f.has($0) }
        guard present.count == 1, let kind = present.first else {
            error(present.isEmpty ? "a step needs one of: \(Self.stepKinds.joined(separator: ", "))"
                  : "a step must have exactly one of \(Self.stepKinds.joined(separator: ", ")); found \(present.joined(separator: " and "))", at: f.at)
            return nil
        }
        for pair in f.pairs where (pair.key == "then" || pair.key == "else") && kind != "if" {
            error("'\(pair.key)' belongs to an 'if' step", at: pair.keyAt)
        }
        if kind != "send", let p = f.pairs.first(where: { $0.key == "provider" }) {
            error("'provider' belongs to a 'send' step", at: p.keyAt)
        }
        switch kind {
        case "send":
            let template = name(f["send"], "send")
            let provider = f["provider"].flatMap { name($0, "provider") }
            return template.map { .send(template: $0, provider: provider) }
        case "wait":
            return duration(f["wait"], "wait").map { .wait(seconds: $0) }
        case "if":
            let condition = condition(f["if"], "if", scope: .event)
            if !f.has("then") { error("an 'if' step needs 'then:'", at: f.at) }
            let thenSteps = steps(f["then"], "then")
            let elseSteps = steps(f["else"], "else")
            return condition.map { .branch(condition: $0, then: thenSteps, else: elseSteps) }
        case "tag", "untag":
            guard let tag = nonEmptyString(f[kind], kind) else { return nil }
            return kind == "tag" ? .tag(tag) : .untag(tag)
        case "set":
            guard let s = f["set"], case .mapping(let pairs, _) = s, !pairs.isEmpty else {
                error("'set' must be a mapping of attribute: value", at: f["set"]?.position)
                return nil
            }
            var values: [String: Value] = [:]
            for pair in pairs {
                if pair.key.range(of: #"^[A-Za-z_][A-Za-z0-9_]*$"#, options: .regularExpression) == nil {
                    error("'set': attribute name '\(pair.key)' must be letters, digits and '_'", at: pair.keyAt)
                }
                if case .scalar(_, .string, _, _, _) = pair.value { _ = liquid(pair.value, pair.key) }
                if case .mapping = pair.value { error("'set': value of '\(pair.key)' must be a scalar or a list", at: pair.value.position) }
                values[pair.key] = pair.value.value
            }
            return .set(values)
        default:
            return number(f["score"], "score").map { .score($0) }
        }
    }
}
