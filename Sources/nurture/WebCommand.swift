import ArgumentParser
import Foundation
import Logging
import Runtime
import Web

struct WebCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "web",
        abstract: "Run the public web endpoints: one-click unsubscribe, preference centre, open pixel, click redirect.",
        discussion: """
            Serves, on NURTURE_WEB_PORT (default 8080), the links workers put into messages (their base is
            NURTURE_PUBLIC_URL):
              POST /u/TOKEN   RFC 8058 one-click unsubscribe (body List-Unsubscribe=One-Click): 200, no page
              GET  /u/TOKEN   a confirmation page with one button
              GET  /p/TOKEN   the preference centre (POST saves it)
              GET  /o/TOKEN   the open pixel (Email Opened, once per delivery per hour, machine opens flagged)
              GET  /c/TOKEN   the click redirect (Email Clicked, then 302 to the link with its UTM parameters)
              GET  /healthz
            Links are HMAC-signed with NURTURE_SECRET, which is required: the role refuses to start without it.
            A forged, changed or expired link gets 400 and changes nothing. Events go onto <namespace>:events
            like an app server's. Stateless: run any number behind a load balancer.
            SIGTERM / SIGINT: stop accepting, finish in-flight requests, exit 0.
            """)

    @OptionGroup var connection: ConnectionOptions

    @Option(help: "Address to listen on.")
    var host: String = "0.0.0.0"

    @Option(help: "Port (env NURTURE_WEB_PORT; default 8080).")
    var port: Int?

    @Option(help: "PostgreSQL connections for page and pixel requests.")
    var databaseConnections: Int = 4

    @Option(help: "HTTP event-loop threads (default: one per core). Request handlers run on Swift's cooperative pool besides these.")
    var eventLoops: Int?

    func validate() throws {
        if let port, !(1...65535).contains(port) { throw ValidationError("--port must be 1-65535") }
        guard (1...64).contains(databaseConnections) else { throw ValidationError("--database-connections must be 1-64") }
        if let eventLoops, !(1...256).contains(eventLoops) { throw ValidationError("--event-loops must be 1-256") }
    }

    func run() async throws {
        let config = try connection.config()
        guard var options = WebOptions(config: config) else {
            throw UserError("NURTURE_SECRET is not set: `nurture web` signs and verifies links with it and refuses to start without it "
                            + "(set the same secret on workers and web, e.g. NURTURE_SECRET=$(openssl rand -hex 32))")
        }
        options.host = host
        if let port { options.port = port }
        options.databaseConnections = databaseConnections
        options.eventLoops = eventLoops
        let logger = Logger(label: "nurture.web")
        let server = WebServer(options: options, logger: logger)
        try await runRole(server.services(), logger: logger)
    }
}
