import Foundation
import Synchronization

/// Delivery ids: UUID version 7 (RFC 9562) — 48 bits of Unix milliseconds, then a 12-bit counter within the
/// millisecond, then 62 random bits. Ids made one after another sort one after another, so a batch's rows go to
/// the right edge of the `deliveries` primary key instead of random pages all over it (a million-recipient
/// broadcast inserts a million ids: with random v4 ids every insert and every settle touched a different leaf).
/// The random bits keep ids unguessable enough for an `Idempotency-Key`; links carrying them are signed anyway.
public enum DeliveryID {
    private struct State {
        var millis: UInt64 = 0
        var counter: UInt16 = 0
        /// Random words from the system generator, fetched 512 at a time (one `getrandom` call instead of one per id).
        var pool: [UInt64] = []
    }
    private static let state = Mutex(State())

    /// A new id in the canonical lowercase text form.
    public static func next() -> String {
        let now = UInt64(max(0, Date().timeIntervalSince1970 * 1000))
        let (millis, counter, low) = state.withLock { s -> (UInt64, UInt16, UInt64) in
            if now > s.millis {
                (s.millis, s.counter) = (now, 0)
            } else if s.counter < 0x0fff {
                s.counter += 1
            } else {
                (s.millis, s.counter) = (s.millis + 1, 0)   // 4,096 ids in one millisecond: borrow the next one (stays ordered)
            }
            if s.pool.isEmpty { s.pool = randomWords(512) }
            return (s.millis, s.counter, s.pool.removeLast())
        }
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in 0..<6 { bytes[i] = UInt8(truncatingIfNeeded: millis >> UInt64(40 - 8 * i)) }
        bytes[6] = 0x70 | UInt8(truncatingIfNeeded: counter >> 8)
        bytes[7] = UInt8(truncatingIfNeeded: counter)
        for i in 0..<8 { bytes[8 + i] = UInt8(truncatingIfNeeded: low >> UInt64(56 - 8 * i)) }
        bytes[8] = 0x80 | (bytes[8] & 0x3f)
        return format(bytes)
    }

    /// `count` words from the kernel's generator in one read of `/dev/urandom` (the standard library's generator
    /// makes one `getrandom` call per word); the standard generator if that device cannot be read.
    static func randomWords(_ count: Int) -> [UInt64] {
        var words = [UInt64](repeating: 0, count: count)
        let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        let filled = fd >= 0 && words.withUnsafeMutableBytes { buffer -> Bool in
            var done = 0
            while done < buffer.count {
                let n = read(fd, buffer.baseAddress! + done, buffer.count - done)
                if n <= 0 { return false }
                done += n
            }
            return true
        }
        if fd >= 0 { close(fd) }
        if !filled {
            var random = SystemRandomNumberGenerator()
            for i in words.indices { words[i] = random.next() }
        }
        return words
    }

    static func format(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(36)
        for (i, b) in bytes.enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { out.append(UInt8(ascii: "-")) }
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
