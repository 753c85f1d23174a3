import ArgumentParser
import Domain
import Foundation
import Redis
import Runtime

/// `nurture events`: write one Segment-spec message to `<ns>:events`, exactly as an app server would.
struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Send events to the events stream, as an app server would (track, identify, alias).",
        discussion: """
            Each subcommand writes exactly one entry: XADD <namespace>:events * payload '<Segment-spec JSON>'
            and prints the stream entry id. A worker (unless started with --no-ingest) ingests it within a second.

            Examples:
              nurture events send --user u42 --event "Signed Up" --properties '{"plan":"pro"}'
              nurture events send --anonymous a-9f3 --event "Pricing Viewed"
              nurture events identify --user u42 --traits '{"email":"ada@example.com","name":"Ada"}' --anonymous a-9f3
              nurture events alias --user u42 --previous a-9f3
            """,
        subcommands: [EventsSendCommand.self, EventsIdentifyCommand.self, EventsAliasCommand.self])
}

enum EventsCLI {
    /// Parses a JSON object flag, or exits 1 with a message.
    static func object(_ text: String?, flag: String) throws -> [String: Any]? {
        guard let text else { return nil }
        guard let parsed = try? JSONSerialization.jsonObject(with: Data(text.utf8)) else {
            throw UserError("\(flag) is not valid JSON: \(text.prefix(80))")
        }
        guard let object = parsed as? [String: Any] else { throw UserError("\(flag) must be a JSON object") }
        return object
    }

    /// Validates the message the way the ingester will, then XADDs it; prints the entry id.
    static func send(_ message: [String: Any], connection: ConnectionOptions) throws {
        var message = message
        if message["messageId"] == nil { message["messageId"] = "cli-" + UUID().uuidString.lowercased() }
        let data = try JSONSerialization.data(withJSONObject: message, options: [.sortedKeys, .withoutEscapingSlashes])
        do { _ = try SegmentMessage.parse(Array(data)) } catch { throw UserError("invalid event: \(error.reason)") }
        let config = try connection.config()
        let redis = try connection.redis(config)
        defer { redis.close() }
        let reply = try redis.execute(RedisCommand("XADD", .string(IngestOptions.streamKey(namespace: config.namespace)), "*",
                                                   "payload", .bytes(Array(data))))
        print(reply.string ?? "\(reply)")
    }
}

struct EventsSendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send", abstract: "Send a track event.",
        discussion: """
            Example: nurture events send --user u42 --event "Order Completed" --properties '{"total":99.5}'
            Without --timestamp the ingester uses the stream entry's time; without --message-id a random one is sent.
            """)
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "The app's user id.") var user: String?
    @Option(help: "An anonymous id (a device or browser).") var anonymous: String?
    @Option(help: "The event name.") var event: String
    @Option(help: "Event properties, a JSON object.") var properties: String?
    @Option(help: "When it happened, ISO-8601 (e.g. 2026-11-22T10:00:00Z).") var timestamp: String?
    @Option(help: "Idempotency key: the same id twice is ingested once.") var messageId: String?

    func validate() throws {
        if user == nil && anonymous == nil { throw ValidationError("--user or --anonymous is required") }
        if let timestamp, Value.parseTime(timestamp) == nil { throw ValidationError("--timestamp is not ISO-8601: \(timestamp)") }
    }

    func run() async throws {
        var message: [String: Any] = ["type": "track", "event": event]
        if let user { message["userId"] = user }
        if let anonymous { message["anonymousId"] = anonymous }
        if let p = try EventsCLI.object(properties, flag: "--properties") { message["properties"] = p }
        if let timestamp { message["timestamp"] = timestamp }
        if let messageId { message["messageId"] = messageId }
        try EventsCLI.send(message, connection: connection)
    }
}

struct EventsIdentifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "identify", abstract: "Send an identify call: who the user is, with traits.",
        discussion: """
            Example: nurture events identify --user u42 --traits '{"email":"ada@example.com","plan":"pro"}' --anonymous a-9f3
            With --anonymous, the anonymous contact's history is merged into the user.
            """)
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "The app's user id.") var user: String
    @Option(help: "Traits, a JSON object (email, phone, timezone go to their own columns).") var traits: String
    @Option(help: "The anonymous id this user browsed with.") var anonymous: String?

    func run() async throws {
        var message: [String: Any] = ["type": "identify", "userId": user]
        message["traits"] = try EventsCLI.object(traits, flag: "--traits")
        if let anonymous { message["anonymousId"] = anonymous }
        try EventsCLI.send(message, connection: connection)
    }
}

struct EventsAliasCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alias", abstract: "Send an alias call: link a previous id to a user id.",
        discussion: "Example: nurture events alias --user u42 --previous a-9f3")
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "The user id.") var user: String
    @Option(help: "The previous id (anonymous or older user id).") var previous: String

    func run() async throws {
        try EventsCLI.send(["type": "alias", "userId": user, "previousId": previous], connection: connection)
    }
}
