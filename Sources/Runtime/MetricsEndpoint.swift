import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus

/// Process-wide Prometheus registry behind swift-metrics (bootstrapped once by long-running roles).
public enum NurtureMetrics {
    public static let registry = PrometheusCollectorRegistry()

    private static let bootstrapped = BootstrapOnce()

    public static func bootstrap() {
        bootstrapped.run {
            var factory = PrometheusMetricsFactory(registry: registry)
            factory.defaultDurationHistogramBuckets = [
                .microseconds(100), .microseconds(500), .milliseconds(1), .milliseconds(5), .milliseconds(10),
                .milliseconds(50), .milliseconds(100), .milliseconds(500), .seconds(1), .seconds(5), .seconds(30),
            ]
            MetricsSystem.bootstrap(factory)
        }
    }

    /// The Prometheus text exposition of every metric.
    public static func render() -> String {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}

final class BootstrapOnce: Sendable {
    private let done = Mutex(false)
    func run(_ body: () -> Void) {
        done.withLock { d in if !d { body(); d = true } }
    }
}

import Synchronization

/// `/metrics` (Prometheus) and `/healthz` for `scheduler` and `worker` on `NURTURE_METRICS_PORT`.
public struct MetricsEndpoint: Sendable {
    public let port: Int
    /// nil = healthy; otherwise the reason (reported with 503).
    public let health: @Sendable () -> String?

    public init(port: Int, health: @escaping @Sendable () -> String?) {
        self.port = port
        self.health = health
    }

    public func application(logger: Logger) -> some ApplicationProtocol {
        let router = Router()
        router.get("metrics") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: NurtureMetrics.render())))
        }
        let health = self.health
        router.get("healthz") { _, _ -> Response in
            if let problem = health() {
                return Response(status: .serviceUnavailable, headers: [.contentType: "text/plain"],
                                body: .init(byteBuffer: ByteBuffer(string: problem + "\n")))
            }
            return Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
        }
        return Application(router: router, configuration: .init(address: .hostname("0.0.0.0", port: port),
                                                                serverName: "nurture-metrics"), logger: logger)
    }
}
