import Crypto

/// SHA-256 (FIPS 180-4): the Liquid `sha256` filter (e.g. hashed e-mail addresses for ad audiences), batch
/// idempotency keys, MIME boundaries and, through `HMACSHA256`, signed links. Streaming: `update` any number of
/// times, then `finalize`. A value type (copies are independent: a copy taken after absorbing a key is an HMAC
/// midstate). Backed by swift-crypto (BoringSSL's assembly SHA-256): signing links is on the hot path of every
/// message sent and every click redirect.
public struct SHA256: Sendable {
    public static let digestByteCount = 32
    public static let blockByteCount = 64

    private var hasher = Crypto.SHA256()

    public init() {}

    /// Feeds more message bytes.
    public mutating func update<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        let done: Void? = bytes.withContiguousStorageIfAvailable { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        if done == nil { Array(bytes).withUnsafeBytes { hasher.update(bufferPointer: $0) } }
    }

    public mutating func update(_ string: String) {
        var string = string
        string.withUTF8 { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
    }

    /// The 32-byte digest; the hasher should not be used afterwards.
    public mutating func finalize() -> [UInt8] {
        Array(hasher.finalize())
    }

    /// One-shot digest of bytes.
    public static func hash<S: Sequence>(_ bytes: S) -> [UInt8] where S.Element == UInt8 {
        var hasher = SHA256()
        hasher.update(bytes)
        return hasher.finalize()
    }

    /// One-shot digest of a string's UTF-8 bytes, as 64 lowercase hex digits.
    public static func hex(_ string: String) -> String {
        var hasher = SHA256()
        hasher.update(string)
        return hexString(hasher.finalize())
    }

    /// One-shot digest of bytes, as 64 lowercase hex digits.
    public static func hex<S: Sequence>(bytes: S) -> String where S.Element == UInt8 { hexString(hash(bytes)) }

    /// Lowercase hex of any bytes.
    public static func hexString(_ bytes: [UInt8]) -> String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0x0f)]) }
        return String(decoding: out, as: UTF8.self)
    }
}

/// HMAC-SHA256 (RFC 2104 / RFC 4231): signs unsubscribe and preference links with `NURTURE_SECRET`.
public enum HMACSHA256 {
    /// The 32-byte authentication code of `message` under `key`.
    public static func authenticationCode<K: Sequence, M: Sequence>(for message: M, key: K) -> [UInt8]
    where K.Element == UInt8, M.Element == UInt8 {
        var keyBytes = Array(key)
        if keyBytes.count > SHA256.blockByteCount { keyBytes = SHA256.hash(keyBytes) }
        keyBytes += [UInt8](repeating: 0, count: SHA256.blockByteCount - keyBytes.count)
        var inner = SHA256()
        inner.update(keyBytes.map { $0 ^ 0x36 })
        inner.update(message)
        let innerDigest = inner.finalize()
        var outer = SHA256()
        outer.update(keyBytes.map { $0 ^ 0x5c })
        outer.update(innerDigest)
        return outer.finalize()
    }

    /// The authentication code of a string under a string key (both UTF-8), as 64 lowercase hex digits.
    public static func hex(_ message: String, key: String) -> String {
        SHA256.hexString(authenticationCode(for: message.utf8, key: key.utf8))
    }

    /// Compares two codes in time independent of where they first differ (for verifying signed links).
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}
