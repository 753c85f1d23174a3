import Channels
import Domain
import Foundation
import Hummingbird
import Logging
import NIOPosix
import NurtureCore
import Postgres
import Redis
import Runtime
import ServiceLifecycle
import Store
import Synchronization

/// What `nurture web` needs (contract §2: `NURTURE_WEB_PORT`, `NURTURE_PUBLIC_URL`, `NURTURE_SECRET`, ...).
public struct WebOptions: Sendable {
    public var host = "0.0.0.0"
    public var port = 8080
    public var publicURL = "http://127.0.0.1:8080"
    /// `NURTURE_SECRET`: signs and verifies every link. Required.
    public var secret: String
    public var namespace = "nurture"
    public var redis = RedisConfig()
    public var databaseURL = "postgres://127.0.0.1:5432/nurture"
    public var timeTravelAllowed = false
    /// PostgreSQL connections (and threads running them) for page and pixel requests.
    public var databaseConnections = 4
    /// SwiftNIO event-loop threads serving HTTP; nil: one per core (SwiftNIO's shared group).
    public var eventLoops: Int? = nil

    public init(secret: String) { self.secret = secret }

    /// The options of a process configuration; nil secret = the role must refuse to start.
    public init?(config: NurtureConfig) {
        guard let secret = config.secret else { return nil }
        self.secret = secret
        port = config.webPort
        publicURL = config.publicURL
        namespace = config.namespace
        redis = config.redisConfig
        databaseURL = config.databaseURL
        timeTravelAllowed = config.allowTimeTravel
    }
}

/// The public HTTP endpoints (issue 7), stateless so any number run behind a load balancer:
///
/// | route | what |
/// |---|---|
/// | `POST /u/{token}` with `List-Unsubscribe=One-Click` | RFC 8058 one-click unsubscribe: 200, empty body |
/// | `GET /u/{token}` | a confirmation page with one button (which POSTs the same form) |
/// | `GET /p/{token}`, `POST /p/{token}` | the preference centre (per channel and category; unsubscribe from everything) |
/// | `GET /o/{token}` | the open pixel: a 1×1 GIF, `Email Opened` once per delivery per hour (machine opens flagged) |
/// | `GET /c/{token}` | the click redirect: `Email Clicked`, then 302 to the signed URL with its UTM parameters |
/// | `GET /healthz` | `ok` |
///
/// A token that is forged, garbled, of the wrong kind or expired gets 400 and changes nothing. Events go onto
/// `<namespace>:events` exactly as app servers write them (contract §3). Links of contacts merged since act on the
/// surviving contact.
public final class WebServer: Sendable {
    let options: WebOptions
    let links: SignedLinks
    let logger: Logger
    let clock: InstallationClock
    let store = WebStore()
    let executor: BlockingExecutor
    let pool: PostgresPool
    let redis: RedisBatcher
    let streamKey: String
    /// Contact id (from a link) → the surviving contact, for the click hot path; entries live a minute.
    private let identities = Mutex<[Int64: (contact: WebContact, until: Int64)]>([:])
    static let identityCacheMilliseconds: Int64 = 60_000
    static let identityCacheSize = 100_000
    /// Opens of one delivery count once per this many seconds (per person / machine).
    static let openDedupeSeconds = 3_600

    public init(options: WebOptions, logger: Logger = Logger(label: "nurture.web")) {
        self.options = options
        self.logger = logger
        links = SignedLinks(publicURL: options.publicURL, secret: options.secret)
        clock = InstallationClock(timeTravelAllowed: options.timeTravelAllowed)
        executor = BlockingExecutor(threads: max(1, options.databaseConnections), name: "nurture-web-db")
        pool = PostgresPool(url: options.databaseURL, maximumConnections: max(1, options.databaseConnections), statementTimeoutMilliseconds: 10_000)
        redis = RedisBatcher(config: options.redis, logger: logger)
        streamKey = IngestOptions.streamKey(namespace: options.namespace)
    }

    /// The role's services, in start order: housekeeping (clock refresh; on shutdown, drains the Redis writer and
    /// closes the pools) and the HTTP server (on SIGTERM it stops accepting and finishes in-flight requests first).
    public func services() -> [any Service] {
        [Housekeeping(server: self), application()]
    }

    public func application() -> some ApplicationProtocol {
        let router = Router()
        router.get("healthz") { _, _ in Self.text(.ok, "ok\n") }
        router.get("u/:token") { [self] _, context in try await unsubscribePage(context.parameters.require("token")) }
        router.post("u/:token") { [self] request, context in
            var request = request
            let body = try await request.collectBody(upTo: 16_384)
            var form = Self.form(body)
            // RFC 8058 allows multipart/form-data too: take its List-Unsubscribe part.
            if request.headers[.contentType]?.lowercased().hasPrefix("multipart/form-data") == true,
               String(buffer: body).contains("name=\"List-Unsubscribe\"\r\n\r\nOne-Click") {
                form = [("List-Unsubscribe", "One-Click")]
            }
            return try await unsubscribe(context.parameters.require("token"), form: form)
        }
        router.get("p/:token") { [self] request, context in
            try await preferencesPage(context.parameters.require("token"), status: request.uri.queryParameters["done"].map(String.init))
        }
        router.post("p/:token") { [self] request, context in
            var request = request
            return try await savePreferences(context.parameters.require("token"), form: Self.form(try await request.collectBody(upTo: 65_536)))
        }
        router.get("o/:token") { [self] request, context in
            try await open(context.parameters.require("token"), userAgent: request.headers[.userAgent])
        }
        router.get("c/:token") { [self] _, context in try await click(context.parameters.require("token")) }
        let logger = self.logger
        let options = self.options
        let group: EventLoopGroupProvider = options.eventLoops.map { .shared(MultiThreadedEventLoopGroup(numberOfThreads: $0)) } ?? .singleton
        return Application(router: router,
                           configuration: .init(address: .hostname(options.host, port: options.port), serverName: "nurture-web"),
                           onServerRunning: { _ in
                               logger.info("web listening", metadata: ["host": "\(options.host)", "port": "\(options.port)",
                                                                       "public_url": "\(options.publicURL)"])
                           },
                           eventLoopGroupProvider: group,
                           logger: logger)
    }

    // MARK: - links

    enum LinkProblem: Error { case invalid, expired }

    func payload(_ token: String, purpose: String) -> SignedLinkPayload? {
        guard let p = links.verify(token), p.purpose == purpose, !p.isExpired(at: clock.now()) else { return nil }
        return p
    }

    static let invalidLink = html(.badRequest, WebPages.message(
        title: "This link does not work",
        "The link is incomplete, has been changed, or has expired. Please use the link from a recent message."))

    // MARK: - unsubscribe

    func unsubscribePage(_ token: String) async throws -> Response {
        guard let p = payload(token, purpose: "u") else { return Self.invalidLink }
        let contact = try await database { [store] db in try store.contact(p.contactId, on: db) }
        guard let contact, !contact.erased else {
            return Self.html(.ok, WebPages.message(title: "Nothing to do", "We hold no marketing subscription for this link."))
        }
        return Self.html(.ok, WebPages.confirmUnsubscribe(action: "/u/\(token)", preferencesURL: preferencesPath(contact.id),
                                                         alreadyUnsubscribed: contact.unsubscribedAt != nil))
    }

    /// RFC 8058: `List-Unsubscribe=One-Click` in the body unsubscribes at once, 200 with no page. The confirmation
    /// page posts the same form (with `from=page`) and gets a page back.
    func unsubscribe(_ token: String, form: [(String, String)]) async throws -> Response {
        guard let p = payload(token, purpose: "u") else { return Self.invalidLink }
        let fromPage = form.contains { $0 == ("from", "page") }
        guard form.contains(where: { $0.0 == "List-Unsubscribe" && $0.1 == "One-Click" }) else {
            return Self.text(.badRequest, "expected the form body List-Unsubscribe=One-Click (RFC 8058)\n")
        }
        let source = (fromPage ? "unsubscribe-page" : "one-click") + (p.deliveryId.map { " delivery=\($0)" } ?? "")
        let now = clock.now()
        let outcome: (WebContact, Bool)? = try await database { [store] db in
            guard let contact = try store.contact(p.contactId, on: db), !contact.erased else { return nil }
            return (contact, try store.unsubscribe(contactId: contact.id, source: source, now: now, on: db))
        }
        if let (contact, changed) = outcome, changed {
            var properties: [String: Value] = ["source": .string(fromPage ? "unsubscribe-page" : "one-click")]
            if let d = p.deliveryId { properties["delivery_id"] = .string(d) }
            await emit("Unsubscribed", contact: contact, properties: properties, now: now)
            logger.info("unsubscribed", metadata: ["contact": "\(contact.id)", "source": "\(source)"])
        }
        if fromPage, let (contact, _) = outcome {
            return Self.html(.ok, WebPages.unsubscribed(preferencesURL: preferencesPath(contact.id)))
        }
        return Response(status: .ok, headers: [.cacheControl: "no-store"])
    }

    func preferencesPath(_ contactId: Int64) -> String {
        let url = links.preferencesURL(contactId: contactId)
        return String(url.dropFirst(links.publicURL.count))
    }

    // MARK: - preference centre

    func preferencesPage(_ token: String, status: String?) async throws -> Response {
        guard let p = payload(token, purpose: "p") else { return Self.invalidLink }
        let loaded: (WebContact, [WebPreference])? = try await database { [store] db in
            guard let contact = try store.contact(p.contactId, on: db), !contact.erased else { return nil }
            return (contact, try store.preferences(of: contact, on: db))
        }
        guard let (contact, preferences) = loaded else {
            return Self.html(.ok, WebPages.message(title: "Nothing to do", "We hold no preferences for this link."))
        }
        let message: String? = switch status {
        case "saved": "Your preferences are saved."
        case "unsubscribed": "You are unsubscribed from all marketing messages."
        default: nil
        }
        return Self.html(.ok, WebPages.preferences(action: "/p/\(token)", preferences: preferences,
                                                   unsubscribed: contact.unsubscribedAt != nil, status: message))
    }

    func savePreferences(_ token: String, form: [(String, String)]) async throws -> Response {
        guard let p = payload(token, purpose: "p") else { return Self.invalidLink }
        let action = form.first { $0.0 == "action" }?.1 ?? "save"
        let ticked = Set(form.filter { $0.0 == "c" }.map(\.1))
        let now = clock.now()
        if action == "unsubscribe_all" {
            let outcome: (WebContact, Bool)? = try await database { [store] db in
                guard let contact = try store.contact(p.contactId, on: db), !contact.erased else { return nil }
                return (contact, try store.unsubscribe(contactId: contact.id, source: "preference-centre", now: now, on: db))
            }
            if let (contact, changed) = outcome, changed {
                await emit("Unsubscribed", contact: contact, properties: ["source": .string("preference-centre")], now: now)
            }
            return Self.seeOther("/p/\(token)?done=unsubscribed")
        }
        let outcome: (WebContact, [WebPreference], Bool)? = try await database { [store] db in
            guard let contact = try store.contact(p.contactId, on: db), !contact.erased else { return nil }
            let wanted = try store.choices(on: db).map {
                WebPreference(channel: $0.channel, category: $0.category, granted: ticked.contains("\($0.channel):\($0.category)"))
            }
            let changes = try store.update(contactId: contact.id, to: wanted, source: "preference-centre", now: now, on: db)
            return (contact, changes, contact.unsubscribedAt != nil && wanted.contains(where: \.granted))
        }
        if let (contact, changes, resubscribed) = outcome, !changes.isEmpty {
            let list: [Value] = changes.map {
                .object(["channel": .string($0.channel), "category": .string($0.category), "subscribed": .bool($0.granted)])
            }
            var properties: [String: Value] = ["source": .string("preference-centre"), "changes": .array(list)]
            if resubscribed { properties["resubscribed"] = .bool(true) }
            await emit("Subscription Changed", contact: contact, properties: properties, now: now)
        }
        return Self.seeOther("/p/\(token)?done=saved")
    }

    // MARK: - open pixel

    func open(_ token: String, userAgent: String?) async throws -> Response {
        guard let p = payload(token, purpose: "o"), let deliveryId = p.deliveryId else {
            return Self.text(.badRequest, "invalid link\n")
        }
        let now = clock.now()
        let found: (WebContact, WebDelivery)? = try await database { [store] db in
            guard let contact = try store.contact(p.contactId, on: db), !contact.erased,
                  let delivery = try store.delivery(deliveryId, on: db) else { return nil }
            return (contact, delivery)
        }
        if let (contact, delivery) = found {
            let machine = MachineOpen.reason(userAgent: userAgent, sentAt: delivery.sentAt, now: now)
            let key = "\(options.namespace):web:open:{\(deliveryId)}:\(machine == nil ? "person" : "machine")"
            do {
                let reply = try await redis.run([RedisCommand("SET", .string(key), "1", "NX", "EX", .int(Int64(Self.openDedupeSeconds)))])
                if reply.first?.string == "OK" {
                    var properties: [String: Value] = [
                        "delivery_id": .string(deliveryId), "template": .string(delivery.template), "channel": .string(delivery.channel),
                        "machine": .bool(machine != nil),
                    ]
                    if let machine { properties["machine_reason"] = .string(machine) }
                    switch delivery.sourceKind {
                    case "workflow":
                        if let name = delivery.sourceName { properties["workflow"] = .string(name) }
                        if let step = delivery.step { properties["step"] = .number(Double(step)) }
                    case "broadcast":
                        if let id = delivery.broadcastId { properties["broadcast_id"] = .number(Double(id)) }
                        if let name = delivery.sourceName { properties["broadcast"] = .string(name) }
                    default: break
                    }
                    await emit("Email Opened", contact: contact, properties: properties, now: now)
                }
            } catch {
                logger.error("open not recorded", metadata: ["delivery": "\(deliveryId)", "error": "\(error)"])
            }
        }
        return Response(status: .ok, headers: [.contentType: "image/gif", .cacheControl: "no-store, no-cache, must-revalidate, private",
                                               .expires: "0"],
                        body: .init(byteBuffer: ByteBuffer(bytes: Pixel.gif)))
    }

    // MARK: - click redirect

    /// The hot path: the token carries the destination, so a click costs one HMAC, a cached contact lookup and an
    /// XADD pipelined with other requests'; PostgreSQL is only asked about a contact not seen for a minute.
    func click(_ token: String) async throws -> Response {
        guard let p = payload(token, purpose: "c"), let deliveryId = p.deliveryId, let url = p.url else {
            return Self.invalidLink
        }
        let destination = LinkTracking.addQuery(p.utm, to: url)
        let lower = destination.lowercased()
        guard lower.hasPrefix("https://") || lower.hasPrefix("http://"),
              !destination.contains(where: { $0 == "\r" || $0 == "\n" }) else { return Self.invalidLink }
        do {
            if let contact = try await cachedContact(p.contactId), !contact.erased {
                await emit("Email Clicked", contact: contact,
                           properties: ["delivery_id": .string(deliveryId), "url": .string(url)], now: clock.now())
            }
        } catch {
            logger.error("click not recorded", metadata: ["delivery": "\(deliveryId)", "error": "\(error)"])
        }
        return Response(status: .found, headers: [.location: destination, .cacheControl: "no-store", Self.referrerPolicy: "no-referrer"])
    }

    func cachedContact(_ id: Int64) async throws -> WebContact? {
        let now = monotonicMilliseconds()
        if let hit = identities.withLock({ $0[id] }), hit.until > now { return hit.contact }
        let contact = try await database { [store] db in try store.contact(id, on: db) }
        if let contact {
            identities.withLock { cache in
                if cache.count >= Self.identityCacheSize { cache.removeAll(keepingCapacity: true) }
                cache[id] = (contact, now + Self.identityCacheMilliseconds)
            }
        }
        return contact
    }

    // MARK: - events

    /// Writes a track event for the contact onto `<namespace>:events` (contract §3). A contact with neither a
    /// user id nor an anonymous id cannot be named on the stream: logged and skipped.
    func emit(_ event: String, contact: WebContact, properties: [String: Value], now: Date) async {
        var message: [String: Value] = [
            "type": .string("track"), "event": .string(event), "properties": .object(properties),
            "timestamp": .string(Self.timestamp(now)), "messageId": .string("web-" + UUID().uuidString.lowercased()),
            "context": .object(["library": .object(["name": .string("nurture-web")])]),
        ]
        if let user = contact.userId { message["userId"] = .string(user) } else if let anonymous = contact.anonymousId {
            message["anonymousId"] = .string(anonymous)
        } else {
            logger.warning("event not written: the contact has no user id or anonymous id",
                           metadata: ["event": "\(event)", "contact": "\(contact.id)"])
            return
        }
        let payload = Value.object(message).jsonText
        do {
            let reply = try await redis.run([RedisCommand("XADD", .string(streamKey), "*", "payload", .string(payload))])
            if case .error(let text)? = reply.first { throw RedisError(.server, text) }
        } catch {
            logger.error("event not written", metadata: ["event": "\(event)", "contact": "\(contact.id)", "error": "\(error)"])
        }
    }

    // MARK: - plumbing

    /// `2026-11-23T10:00:00.123Z`: an event's `timestamp`.
    static func timestamp(_ date: Date) -> String { Value.iso8601(date, milliseconds: true) }

    /// Runs blocking libpq work on the role's own threads, never on the cooperative pool.
    /// Runs `body` on a pooled connection. A connection PostgreSQL dropped while it sat in the pool (a restart, a
    /// failover, an idle timeout) fails its next statement with `connectionLost`; the body then runs once more,
    /// on a reconnected connection. That is safe because every web operation is idempotent: reads, and writes that
    /// set a state (unsubscribed, a preference) whatever ran before. (If the lost statement was a commit that did
    /// happen, the second run finds the state already set and writes no second event.)
    func database<T: Sendable>(_ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        do {
            return try await pool.withConnection(on: executor, body)
        } catch let error as PostgresError where error.kind == .connectionLost {
            logger.warning("PostgreSQL connection lost; running the request's statements again", metadata: ["error": "\(error)"])
            return try await pool.withConnection(on: executor, body)
        }
    }

    static let referrerPolicy = HTTPFields.Element.Name("Referrer-Policy")!
    static let securityHeaders: [(HTTPFields.Element.Name, String)] = [
        (HTTPFields.Element.Name("Content-Security-Policy")!,
         "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
        (referrerPolicy, "no-referrer"),
        (HTTPFields.Element.Name("X-Content-Type-Options")!, "nosniff"),
        (.cacheControl, "no-store"),
    ]

    static func html(_ status: HTTPResponse.Status, _ page: String) -> Response {
        var headers: HTTPFields = [.contentType: "text/html; charset=utf-8"]
        for (name, value) in securityHeaders { headers[name] = value }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: page)))
    }

    static func text(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-store"],
                 body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func seeOther(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location, .cacheControl: "no-store"])
    }

    /// `application/x-www-form-urlencoded` pairs, in order.
    static func form(_ body: ByteBuffer) -> [(String, String)] {
        let text = String(buffer: body)
        return text.split(separator: "&").map { pair in
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String {
                (String(s).replacingOccurrences(of: "+", with: " ")).removingPercentEncoding ?? String(s)
            }
            return (decode(kv[0]), kv.count > 1 ? decode(kv[1]) : "")
        }
    }

    func stop() {
        redis.stop()
        pool.close()
        executor.shutdown()
    }
}

/// Refreshes the installation clock every second (time travel, contract §7) and, on shutdown — after the HTTP
/// server has finished its requests — drains the Redis writer and closes the connections.
struct Housekeeping: Service {
    let server: WebServer

    func run() async throws {
        let server = self.server
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            if server.clock.timeTravelAllowed {
                do {
                    try await server.database { db in try server.clock.refresh(from: db) }
                } catch {
                    server.logger.warning("clock refresh failed", metadata: ["error": "\(error)"])
                }
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        try await BlockingExecutor.shared.run { server.stop() }
    }
}
