/// Runs `body` and returns the error it threw as `E` (nil if it did not throw, or threw something else).
/// Tests use it instead of `do/catch let e as E`, which trips a Swift 6.3 compiler crash with typed throws.
public func captureError<E: Error>(_ type: E.Type, _ body: () throws -> Void) -> E? {
    do { try body() } catch { return error as? E }
    return nil
}
