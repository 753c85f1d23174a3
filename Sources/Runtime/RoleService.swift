import Foundation
import Logging
import NurtureCore
import ServiceLifecycle
import UnixSignals

/// Wraps a thread-based engine (worker, scheduler) as a swift-service-lifecycle `Service`: starts it, waits for
/// graceful shutdown (SIGTERM/SIGINT), then stops it on a dedicated thread (stopping blocks while in-flight jobs
/// finish) and returns, so the process exits 0.
public struct EngineService: Service {
    let name: String
    let start: @Sendable () throws -> Void
    let stop: @Sendable () -> Void

    public init(name: String, start: @escaping @Sendable () throws -> Void, stop: @escaping @Sendable () -> Void) {
        self.name = name
        self.start = start
        self.stop = stop
    }

    public func run() async throws {
        let start = self.start
        try await BlockingExecutor.shared.run { try start() }
        // Park until shutdown is requested.
        try? await gracefulShutdown()
        let stop = self.stop
        try await BlockingExecutor.shared.run { stop() }
    }
}

/// Runs a role's services until SIGTERM/SIGINT, then shuts them down in reverse order.
public func runRole(_ services: [any Service], logger: Logger) async throws {
    let group = ServiceGroup(configuration: .init(
        services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
        gracefulShutdownSignals: [.sigterm, .sigint],
        cancellationSignals: [],
        logger: logger))
    try await group.run()
}
