/// Exponential backoff with full jitter ("Exponential Backoff And Jitter", AWS architecture blog):
/// delay = random(0 ... min(cap, base * 2^attempt)). Full jitter spreads a fleet's retries so a restarted
/// server is not hit by every client in the same millisecond.
public struct Backoff: Sendable, Equatable {
    public var baseMilliseconds: Double
    public var capMilliseconds: Double

    public init(baseMilliseconds: Double = 50, capMilliseconds: Double = 5_000) {
        self.baseMilliseconds = baseMilliseconds
        self.capMilliseconds = capMilliseconds
    }

    /// The upper bound of the delay before retry number `attempt` (0-based).
    public func ceiling(attempt: Int) -> Double {
        let exponent = Double(min(max(attempt, 0), 40))
        return min(capMilliseconds, baseMilliseconds * pow2(exponent))
    }

    /// A jittered delay in milliseconds for retry number `attempt` (0-based).
    public func delay<G: RandomNumberGenerator>(attempt: Int, using generator: inout G) -> Double {
        let ceiling = ceiling(attempt: attempt)
        // Never below a tenth of the ceiling, so a tight loop cannot spin on a dead server.
        return Double.random(in: (ceiling / 10)...ceiling, using: &generator)
    }

    public func delay(attempt: Int) -> Double {
        var generator = SystemRandomNumberGenerator()
        return delay(attempt: attempt, using: &generator)
    }

    private func pow2(_ exponent: Double) -> Double {
        var result = 1.0
        for _ in 0..<Int(exponent) { result *= 2 }
        return result
    }
}
