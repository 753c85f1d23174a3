import Domain
import Foundation
import Postgres
import Store
import Testing
import TestSupport

/// Definitions of the workflow tests. `onboarding` v1 numbers its steps:
///   1 send hello (path 0), 2 wait 2d (1), 3 if (2), 4 send nudge (2.then.0), 5 tag free (2.else.0), 6 send hello (3)
/// v2 prepends `score: 5`, so every step moves down one: 1 score (0), 2 send hello (1), 3 wait (2), 4 if (3),
/// 5 send nudge (3.then.0), 6 tag free (3.else.0), 7 send hello (4).
private let baseYAML = """
    kind: provider
    name: email
    channel: email
    type: http
    url: http://127.0.0.1:9/email
    from: "Acme <hello@acme.test>"
    ---
    kind: provider
    name: sms
    channel: sms
    type: http
    url: http://127.0.0.1:9/sms
    ---
    kind: template
    name: hello
    channel: email
    subject: "Hi {{ contact.first_name | default: 'there' }}"
    html: '<p>{{ contact.first_name }} likes {{ event.properties.product }}</p><a href="{{ unsubscribe_url }}">unsubscribe</a>'
    text: "score {{ contact.score }}; tags {{ contact.tags | join: ',' }}; plan {{ contact.plan }}; prefs {{ preferences_url }}"
    ---
    kind: template
    name: nudge
    channel: sms
    text: "Hey {{ contact.first_name }}, {{ workflow.name | default: 'no workflow' }}"
    ---
    kind: workflow
    name: other
    trigger:
      when: 'contact.score >= 50'
    steps:
      - tag: hot
    """

private func onboardingYAML(scoreFirst: Bool) -> String {
    """
    kind: workflow
    name: onboarding
    trigger:
      event: Signed Up
    exit_when: 'event.name == "Order Completed"'
    steps:
    \(scoreFirst ? "  - score: 5\n" : "")  - send: hello
      - wait: 2d
      - if: 'contact.plan == "pro"'
        then:
          - send: nudge
        else:
          - tag: free
      - send: hello
    """
}

/// Applies YAML definition documents as `nurture apply` does.
private func apply(_ yaml: String, _ db: PostgresConnection) throws {
    var loader = DefinitionLoader()
    loader.load(file: "test.yaml", text: yaml)
    let report = loader.finish()
    #expect(report.errors.isEmpty, "\(report.errors)")
    let records = report.definitions.map {
        DefinitionRecord(kind: $0.kind.rawValue, name: $0.name, checksum: $0.checksum, specJSON: $0.canonicalJSON, source: $0.source)
    }
    _ = try DefinitionStore().apply(records, appliedBy: "test", at: Date(), on: db)
}

/// Step positions of onboarding v1 and v2 (see above), as the report command derives them from the programs.
private let positions: [WorkflowStepPosition] = {
    let v1 = ["0", "1", "2", "2.then.0", "2.else.0", "3"]
    let v2 = ["0", "1", "2", "3", "3.then.0", "3.else.0", "4"]
    return v1.enumerated().map { WorkflowStepPosition(version: 1, path: $1, number: $0 + 1) }
        + v2.enumerated().map { WorkflowStepPosition(version: 2, path: $1, number: $0 + 1) }
}()

/// The runs, written by hand (E = enrollment; seq, step, outcome[, detail]):
///
///   E1 v1 completed at "3":   0 1 sent; 1 2 done; 2 3 done then; 3 4 sent; 4 6 failed
///   E2 v1 completed at "3":   0 1 deferred_quiet_hours; 0 1 sent; 1 2 done; 2 3 done else; 3 5 done; 4 6 capped
///   E3 v1 exited at "2" (exit_when on an event during the wait): 0 1 suppressed; 1 2 done; 2 0 exited
///   E4 v1 exited at "3" (contact erased):  0 1 no_address; 1 2 done; 2 3 done else; 3 5 done; 4 6 exited
///   E5 v1 active at "0":      0 1 deferred_quiet_hours; 0 1 deferred_quiet_hours (deferred twice: the log keeps
///                             both rows, reports count the enrollment once)
///   E6 v1 failed at "0":      nothing
///   E7 v1 exited at "0" (exit_when in the enrolling batch): 0 0 exited
///   E8 v2 exited at "3" (exit_when before step 4): 0 1 done; 1 2 sent; 2 3 done; 3 0 exited
///   E9 `other` v1 active at "0": 0 1 done
///
/// Hand-computed, every version:
///   onboarding: enrolled 8, active 1 (E5), completed 2 (E1 E2), exited 4 (E3 E4 E7 E8), failed 1 (E6),
///     goal exits 3 (E3 E7 E8): goal conversion 3/8, completion 2/8.
///   step 1: reached E1 E2 E3 E4 E5 E8 = 6; sent 2; suppressed 1; no_address 1; deferred 2 (E2 E5); done 1 (E8);
///           exited 1 (E7 at v1 "0"), goal 1
///   step 2: reached E1 E2 E3 E4 E8 = 5; done 4; sent 1 (E8)
///   step 3: reached E1 E2 E4 E8 = 4; done 4; then 1; else 2; exited 1 (E3 at v1 "2"), goal 1
///   step 4: reached 1 (E1 sent); exited 1 (E8 at v2 "3"), goal 1
///   step 5: reached 2, done 2
///   step 6: reached 2 (E1 failed, E2 capped; E4's exit row is not a reach); failed 1; capped 1; exited 1 (E4), goal 0
/// Version 1 only: enrolled 7, exited 3, goal 2; step 1 reached 5, done 0; step 2 reached 4, sent 0; step 3 reached 3;
///   step 4 exited 0.
private struct Runs {
    let db: PostgresConnection
    let now: Date

    @discardableResult
    func enroll(_ contact: Int64, workflow: String = "onboarding", version: Int = 1, state: String, path: String,
                reason: String? = nil) throws -> Int64 {
        try #require(try db.query("""
            INSERT INTO enrollments (workflow, workflow_version, contact_id, state, step_path, step_seq, trigger, started_at,
                                     finished_at, exit_reason)
            VALUES ($1, $2, $3, $4, $5, 0, '{}', $6, CASE WHEN $4 = 'active' THEN NULL ELSE $6 END, $7) RETURNING id
            """, [.text(workflow), .int(Int64(version)), .int(contact), .text(state), .text(path), .timestamp(now),
                  PostgresValue(reason)]).first?[0].int)
    }

    func log(_ enrollment: Int64, workflow: String = "onboarding", version: Int = 1, _ rows: [(Int, Int, String, String?)]) throws {
        for (seq, step, outcome, detail) in rows {
            try db.execute("""
                INSERT INTO enrollment_steps (enrollment_id, step_seq, workflow, workflow_version, step, outcome, detail, at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                """, [.int(enrollment), .int(Int64(seq)), .text(workflow), .int(Int64(version)), .int(Int64(step)), .text(outcome),
                      PostgresValue(detail), .timestamp(now)])
        }
    }
}

/// Applies the definitions (onboarding v1 then v2) and writes the runs above; returns the contacts (c[0] = Ann).
@discardableResult
private func insertRuns(_ db: PostgresConnection) throws -> [Int64] {
    try apply(baseYAML + "\n---\n" + onboardingYAML(scoreFirst: false), db)
    try apply(baseYAML + "\n---\n" + onboardingYAML(scoreFirst: true), db)
    let data = Dataset(db: db, now: Date())
    var contacts: [Int64] = []
    for i in 1...9 { contacts.append(try data.contact("u\(i)", stage: nil)) }
    try db.execute("""
        UPDATE contacts SET attributes = '{"first_name":"Ann","plan":"pro"}', tags = ARRAY['vip','beta'], phone = '+15550001'
        WHERE id = $1
        """, [.int(contacts[0])])
    try db.execute("UPDATE contacts SET email = NULL WHERE id = $1", [.int(contacts[1])])
    let r = Runs(db: db, now: data.now)
    let e1 = try r.enroll(contacts[0], state: "completed", path: "3")
    try r.log(e1, [(0, 1, "sent", nil), (1, 2, "done", nil), (2, 3, "done", "then"), (3, 4, "sent", nil), (4, 6, "failed", "HTTP 400")])
    let e2 = try r.enroll(contacts[1], state: "completed", path: "3")
    try r.log(e2, [(0, 1, "deferred_quiet_hours", "until x"), (0, 1, "sent", nil), (1, 2, "done", nil), (2, 3, "done", "else"),
                   (3, 5, "done", nil), (4, 6, "capped", "frequency cap")])
    let e3 = try r.enroll(contacts[2], state: "exited", path: "2", reason: "exit_when on Order Completed (m3)")
    try r.log(e3, [(0, 1, "suppressed", "unsubscribed"), (1, 2, "done", nil), (2, 0, "exited", "exit_when on Order Completed (m3)")])
    let e4 = try r.enroll(contacts[3], state: "exited", path: "3", reason: "contact erased or merged")
    try r.log(e4, [(0, 1, "no_address", "no email address"), (1, 2, "done", nil), (2, 3, "done", "else"), (3, 5, "done", nil),
                   (4, 6, "exited", "contact erased or merged")])
    let e5 = try r.enroll(contacts[4], state: "active", path: "0")
    try r.log(e5, [(0, 1, "deferred_quiet_hours", "until y"), (0, 1, "deferred_quiet_hours", "until y")])
    try r.enroll(contacts[5], state: "failed", path: "0", reason: "workflow onboarding v1 is not stored")
    let e7 = try r.enroll(contacts[6], state: "exited", path: "0", reason: "exit_when on Order Completed (m7)")
    try r.log(e7, [(0, 0, "exited", "exit_when on a later event of the same batch")])
    let e8 = try r.enroll(contacts[7], version: 2, state: "exited", path: "3", reason: "exit_when before step 4")
    try r.log(e8, version: 2, [(0, 1, "done", nil), (1, 2, "sent", nil), (2, 3, "done", nil), (3, 0, "exited", "exit_when before step 4")])
    let e9 = try r.enroll(contacts[8], workflow: "other", state: "active", path: "0")
    try r.log(e9, workflow: "other", [(0, 1, "done", nil)])
    return contacts
}

@Suite struct WorkflowReportTests {
    @Test func countsAndStepsMatchTheHandComputedFigures() throws {
        let (database, db) = try migratedDatabase("workflow_report")
        defer { db.close(); database.drop() }
        try insertRuns(db)
        let store = WorkflowReportStore()

        let all = try store.counts(on: db)
        #expect(all == [
            WorkflowEnrollmentCounts(workflow: "onboarding", enrolled: 8, active: 1, completed: 2, exited: 4, failed: 1, goalExits: 3),
            WorkflowEnrollmentCounts(workflow: "other", enrolled: 1, active: 1, completed: 0, exited: 0, failed: 0, goalExits: 0),
        ])
        let onboarding = try store.counts(of: "onboarding", on: db)
        #expect(onboarding.goalConversionRate == 3.0 / 8)
        #expect(onboarding.completionRate == 2.0 / 8)
        #expect(try store.counts(of: "onboarding", version: 1, on: db)
                == WorkflowEnrollmentCounts(workflow: "onboarding", enrolled: 7, active: 1, completed: 2, exited: 3, failed: 1, goalExits: 2))
        let nobody = try store.counts(of: "nobody", on: db)
        #expect(nobody.enrolled == 0 && nobody.goalConversionRate == nil && nobody.completionRate == nil)
        #expect(try store.enrolledVersions(of: "onboarding", on: db) == [1, 2])

        let steps = try store.steps(of: "onboarding", positions: positions, on: db)
        #expect(steps == [
            WorkflowStepMetrics(step: 1, reached: 6, done: 1, sent: 2, suppressed: 1, noAddress: 1, deferredQuietHours: 2, exited: 1, goalExits: 1),
            WorkflowStepMetrics(step: 2, reached: 5, done: 4, sent: 1),
            WorkflowStepMetrics(step: 3, reached: 4, done: 4, then: 1, otherwise: 2, exited: 1, goalExits: 1),
            WorkflowStepMetrics(step: 4, reached: 1, sent: 1, exited: 1, goalExits: 1),
            WorkflowStepMetrics(step: 5, reached: 2, done: 2),
            WorkflowStepMetrics(step: 6, reached: 2, failed: 1, capped: 1, exited: 1),
        ])

        let v1 = try store.steps(of: "onboarding", version: 1, positions: positions, on: db)
        #expect(v1.map(\.step) == [1, 2, 3, 4, 5, 6])
        #expect(v1[0] == WorkflowStepMetrics(step: 1, reached: 5, sent: 2, suppressed: 1, noAddress: 1, deferredQuietHours: 2, exited: 1, goalExits: 1))
        #expect(v1[1] == WorkflowStepMetrics(step: 2, reached: 4, done: 4))
        #expect(v1[2].reached == 3 && v1[2].exited == 1)
        #expect(v1[3] == WorkflowStepMetrics(step: 4, reached: 1, sent: 1))

        // Exits that match no known position are step 0.
        let unplaced = try store.steps(of: "onboarding", positions: [], on: db)
        #expect(unplaced.first == WorkflowStepMetrics(step: 0, exited: 4, goalExits: 3))
        #expect(unplaced.dropFirst().allSatisfy { $0.exited == 0 })

        #expect(try store.steps(of: "other", positions: [WorkflowStepPosition(version: 1, path: "0", number: 1)], on: db)
                == [WorkflowStepMetrics(step: 1, reached: 1, done: 1)])
        #expect(try store.steps(of: "nobody", positions: positions, on: db).isEmpty)
    }

    @Test func workflowsListShowPauseResume() throws {
        let (database, db) = try migratedDatabase("workflows_cli")
        defer { db.close(); database.drop() }
        try insertRuns(db)

        let list = try nurture(["workflows", "--json"], database: database)
        #expect(list.exitCode == 0, "\(list.stderr)")
        let workflows = try #require(try list.json()["workflows"] as? [[String: Any]])
        #expect(workflows.map { $0["name"] as? String } == ["onboarding", "other"])
        let onboarding = workflows[0]
        #expect(onboarding["version"] as? Int == 2)
        #expect(onboarding["paused"] as? Bool == false)
        #expect(onboarding["trigger"] as? String == #"event "Signed Up""#)
        #expect(onboarding["exit_when"] as? String == #"event.name == "Order Completed""#)
        #expect(onboarding["step_count"] as? Int == 7)
        #expect([onboarding["enrolled"], onboarding["active"], onboarding["completed"], onboarding["exited"], onboarding["failed"]]
                    .map { $0 as? Int } == [8, 1, 2, 4, 1])
        #expect(workflows[1]["trigger"] as? String == "when contact.score >= 50")
        #expect(workflows[1]["enrolled"] as? Int == 1 && workflows[1]["exit_when"] is NSNull)

        let text = try nurture(["workflows"], database: database)
        #expect(text.exitCode == 0, "\(text.stderr)")
        let lines = text.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(lines.first == ["workflow", "version", "status", "enrolled", "active", "completed", "exited", "trigger"], "\(text.stdout)")
        #expect(lines.dropFirst().first.map { Array($0.prefix(7)) } == ["onboarding", "v2", "live", "8", "1", "2", "4"])

        let show = try nurture(["workflows", "show", "onboarding", "--json"], database: database)
        #expect(show.exitCode == 0, "\(show.stderr)")
        let shown = try show.json()
        #expect(shown["name"] as? String == "onboarding" && shown["enrolled"] as? Int == 8)
        let steps = try #require(shown["steps"] as? [[String: Any]])
        #expect(steps.map { $0["step"] as? Int } == [1, 2, 3, 4, 5, 6, 7])
        #expect(steps.map { $0["label"] as? String }
                == ["score +5", "send hello", "wait 2d", #"if contact.plan == "pro""#, "send nudge", "tag free", "send hello"])
        #expect(steps.map { $0["path"] as? String } == ["0", "1", "2", "3", "3.then.0", "3.else.0", "4"])
        #expect(steps[4]["branch"] as? String == "then" && steps[4]["depth"] as? Int == 1 && steps[0]["branch"] is NSNull)
        let showText = try nurture(["workflows", "show", "onboarding"], database: database)
        #expect(showText.exitCode == 0, "\(showText.stderr)")
        #expect(showText.stdout.contains("trigger:   event \"Signed Up\""), "\(showText.stdout)")
        #expect(showText.stdout.contains("then: send nudge") && showText.stdout.contains("else: tag free"))

        // Pause: changes the head, says what it did; again: nothing to do; unknown: exit 1.
        let store = EnrollmentStore()
        let pause = try nurture(["workflows", "pause", "onboarding"], database: database)
        #expect(pause.exitCode == 0, "\(pause.stderr)")
        #expect(pause.stdout.contains("paused workflow onboarding") && pause.stdout.contains("1 active enrollment stays where it is"), "\(pause.stdout)")
        #expect(try store.isPaused("onboarding", on: db))
        #expect(try !store.isPaused("other", on: db))
        let again = try nurture(["workflows", "pause", "onboarding"], database: database)
        #expect(again.exitCode == 0 && again.stdout.contains("already paused"), "\(again.stdout)")
        let pausedList = try nurture(["workflows", "--json"], database: database)
        #expect((try pausedList.json()["workflows"] as? [[String: Any]])?.first?["paused"] as? Bool == true)

        let unknown = try nurture(["workflows", "pause", "nope"], database: database)
        #expect(unknown.exitCode == 1)
        #expect(unknown.stderr.contains(#"no workflow "nope""#) && unknown.stderr.contains("onboarding, other"), "\(unknown.stderr)")
        #expect(try nurture(["workflows", "resume", "nope"], database: database).exitCode == 1)
        #expect(try nurture(["workflows", "show", "nope"], database: database).exitCode == 1)

        let resume = try nurture(["workflows", "resume", "onboarding"], database: database)
        #expect(resume.exitCode == 0, "\(resume.stderr)")
        #expect(resume.stdout.contains("resumed workflow onboarding"), "\(resume.stdout)")
        #expect(try !store.isPaused("onboarding", on: db))
        let resumeAgain = try nurture(["workflows", "resume", "onboarding"], database: database)
        #expect(resumeAgain.exitCode == 0 && resumeAgain.stdout.contains("already running"), "\(resumeAgain.stdout)")
    }

    @Test func reportWorkflow() throws {
        let (database, db) = try migratedDatabase("report_workflow")
        defer { db.close(); database.drop() }
        try insertRuns(db)

        let run = try nurture(["report", "workflow", "onboarding", "--json"], database: database)
        #expect(run.exitCode == 0, "\(run.stderr)")
        let report = try run.json()
        #expect(report["workflow"] as? String == "onboarding" && report["version"] as? Int == 2)
        #expect(report["enrolled_versions"] as? [Int] == [1, 2])
        #expect(report["version_filter"] is NSNull)
        #expect([report["enrolled"], report["active"], report["completed"], report["exited"], report["failed"], report["goal_exits"]]
                    .map { $0 as? Int } == [8, 1, 2, 4, 1, 3])
        #expect(report["goal_conversion_rate"] as? Double == 0.375)
        #expect(report["completion_rate"] as? Double == 0.25)
        let steps = try #require(report["steps"] as? [[String: Any]])
        // Labels are v2's; v1's and v2's runs are counted by step number.
        #expect(steps.map { $0["step"] as? Int } == [1, 2, 3, 4, 5, 6, 7])
        #expect(steps.map { $0["label"] as? String }
                == ["score +5", "send hello", "wait 2d", #"if contact.plan == "pro""#, "send nudge", "tag free", "send hello"])
        func column(_ key: String) -> [Int?] { steps.map { $0[key] as? Int } }
        #expect(column("reached") == [6, 5, 4, 1, 2, 2, 0])
        #expect(column("sent") == [2, 1, 0, 1, 0, 0, 0])
        #expect(column("capped") == [0, 0, 0, 0, 0, 1, 0])
        #expect(column("deferred_quiet_hours") == [2, 0, 0, 0, 0, 0, 0])
        #expect(column("suppressed") == [1, 0, 0, 0, 0, 0, 0])
        #expect(column("no_address") == [1, 0, 0, 0, 0, 0, 0])
        #expect(column("failed") == [0, 0, 0, 0, 0, 1, 0])
        #expect(column("exited") == [1, 0, 1, 1, 0, 1, 0])
        #expect(column("goal_exits") == [1, 0, 1, 1, 0, 0, 0])
        #expect(column("then") == [0, 0, 1, 0, 0, 0, 0] && column("else") == [0, 0, 2, 0, 0, 0, 0])

        // One version only: v1's runs, labelled as v1.
        let v1 = try nurture(["report", "workflow", "onboarding", "--workflow-version", "1", "--json"], database: database)
        #expect(v1.exitCode == 0, "\(v1.stderr)")
        let v1Report = try v1.json()
        #expect(v1Report["version"] as? Int == 1 && v1Report["version_filter"] as? Int == 1)
        #expect(v1Report["enrolled"] as? Int == 7 && v1Report["goal_exits"] as? Int == 2)
        let v1Steps = try #require(v1Report["steps"] as? [[String: Any]])
        #expect(v1Steps.map { $0["label"] as? String }
                == ["send hello", "wait 2d", #"if contact.plan == "pro""#, "send nudge", "tag free", "send hello"])
        #expect(v1Steps.map { $0["reached"] as? Int } == [5, 4, 3, 1, 2, 2])

        let text = try nurture(["report", "workflow", "onboarding"], database: database)
        #expect(text.exitCode == 0, "\(text.stderr)")
        #expect(text.stdout.contains("enrolled 8: 1 active, 2 completed, 4 exited (3 by exit_when), 1 failed"), "\(text.stdout)")
        #expect(text.stdout.contains("goal conversion 37.5%; completion 25.0%"), "\(text.stdout)")
        #expect(text.stdout.contains("v1 numbers its steps differently"), "\(text.stdout)")
        let header = try #require(text.stdout.split(separator: "\n").first { $0.hasPrefix("step") })
        #expect(header.split(separator: " ").map(String.init)
                == ["step", "reached", "sent", "capped", "quiet", "hours", "suppressed", "no", "address", "failed", "exited", "what"])
        let first = try #require(text.stdout.split(separator: "\n").first { $0.hasPrefix("1 ") })
        #expect(first.split(separator: " ").map(String.init) == ["1", "6", "2", "0", "2", "1", "1", "0", "1", "score", "+5"])
        let v1Text = try nurture(["report", "workflow", "onboarding", "--workflow-version", "1"], database: database)
        #expect(v1Text.exitCode == 0, "\(v1Text.stderr)")
        #expect(v1Text.stdout.contains("only enrollments on v1") && !v1Text.stdout.contains("note:"), "\(v1Text.stdout)")
        let ifRow = try #require(v1Text.stdout.split(separator: "\n").first { $0.hasPrefix("3 ") })
        #expect(ifRow.hasSuffix(#"if contact.plan == "pro"  (then 1, else 2)"#), "\(ifRow)")

        let other = try nurture(["report", "workflow", "other", "--json"], database: database)
        #expect(other.exitCode == 0, "\(other.stderr)")
        #expect(try other.json()["goal_conversion_rate"] as? Double == 0)

        let unknown = try nurture(["report", "workflow", "nope"], database: database)
        #expect(unknown.exitCode == 1)
        #expect(unknown.stderr.contains(#"no workflow "nope""#), "\(unknown.stderr)")
        let badVersion = try nurture(["report", "workflow", "onboarding", "--workflow-version", "9"], database: database)
        #expect(badVersion.exitCode == 1 && badVersion.stderr.contains("no version 9"), "\(badVersion.stderr)")
    }

    @Test func templatesPreview() throws {
        let (database, db) = try migratedDatabase("templates_preview")
        defer { db.close(); database.drop() }
        let contacts = try insertRuns(db)

        let event = #"{"name":"Product Added","properties":{"product":"Lamp <XL>"}}"#
        let run = try nurture(["templates", "preview", "hello", "--contact", "u1", "--event", event, "--json"], database: database)
        #expect(run.exitCode == 0, "\(run.stderr)")
        let preview = try run.json()
        #expect(preview["template"] as? String == "hello" && preview["version"] as? Int == 1)
        #expect(preview["channel"] as? String == "email" && preview["category"] as? String == "marketing")
        #expect(preview["contact_id"] as? Int64 == contacts[0] && preview["contact_key"] as? String == "u1")
        #expect(preview["to"] as? String == "u1@example.com")
        #expect(preview["from"] as? String == "Acme <hello@acme.test>")
        #expect(preview["subject"] as? String == "Hi Ann")
        let html = try #require(preview["html"] as? String)
        #expect(html.hasPrefix("<p>Ann likes Lamp &lt;XL&gt;</p><a href=\""), "\(html)")
        #expect(html.contains("/u/"), "\(html)")
        #expect((preview["text"] as? String)?.hasPrefix("score 0; tags vip,beta; plan pro; prefs ") == true, "\(preview["text"] ?? "")")
        #expect((preview["text"] as? String)?.contains("/p/") == true)
        #expect(preview["body"] is NSNull)
        let headers = try #require(preview["headers"] as? [[String: String]])
        #expect(headers.first?["name"] == "List-Unsubscribe" && headers.first?["value"]?.contains("/u/") == true)

        // By email and by numeric id: the same contact; text mode prints the parts.
        let byEmail = try nurture(["templates", "preview", "hello", "--contact", "u1@example.com"], database: database)
        #expect(byEmail.exitCode == 0, "\(byEmail.stderr)")
        #expect(byEmail.stdout.contains("to: u1@example.com"), "\(byEmail.stdout)")
        #expect(byEmail.stdout.contains("--- subject ---\nHi Ann\n--- html ---\n<p>Ann likes </p>"), "\(byEmail.stdout)")
        #expect(byEmail.stdout.contains("--- text ---\nscore 0; tags vip,beta; plan pro;"))
        let sms = try nurture(["templates", "preview", "nudge", "--contact", String(contacts[0]), "--json"], database: database)
        #expect(sms.exitCode == 0, "\(sms.stderr)")
        #expect(try sms.json()["text"] as? String == "Hey Ann, no workflow")
        #expect(try sms.json()["to"] as? String == "+15550001")

        // Errors: unknown template, unknown contact, no address for the channel, bad --event.
        let unknown = try nurture(["templates", "preview", "nope", "--contact", "u1"], database: database)
        #expect(unknown.exitCode == 1 && unknown.stderr.contains(#"no template "nope""#), "\(unknown.stderr)")
        let nobody = try nurture(["templates", "preview", "hello", "--contact", "ghost"], database: database)
        #expect(nobody.exitCode == 1 && nobody.stderr.contains("no contact ghost"), "\(nobody.stderr)")
        let noEmail = try nurture(["templates", "preview", "hello", "--contact", "u2"], database: database)
        #expect(noEmail.exitCode == 1 && noEmail.stderr.contains("no email address"), "\(noEmail.stderr)")
        let badEvent = try nurture(["templates", "preview", "hello", "--contact", "u1", "--event", "[1]"], database: database)
        #expect(badEvent.exitCode == 1 && badEvent.stderr.contains("--event"), "\(badEvent.stderr)")
    }
}
