import Foundation

/// Telling machine opens from people: mail proxies and security scanners fetch images without a person reading
/// anything, and Apple Mail Privacy Protection prefetches every image on delivery.
public enum MachineOpen {
    /// User-agent fragments of known image proxies and scanners (case-insensitive).
    static let proxyAgents = [
        "googleimageproxy", "ggpht.com", "yahoomailproxy", "yahoo! slurp", "mimecast", "barracuda", "proofpoint",
        "bingpreview", "microsoft office existence discovery", "ms-office", "outlook-link-preview", "symantec",
        "forcepoint", "trendmicro", "zscaler", "headlesschrome", "python-requests", "curl/", "wget/", "go-http-client",
    ]
    /// Apple Mail Privacy Protection fetches with a bare WebKit agent (no `Version/`, no `Safari/`).
    static let appleProxyAgents: Set<String> = [
        "mozilla/5.0",
        "mozilla/5.0 (macintosh; intel mac os x 10_15_7) applewebkit/605.1.15 (khtml, like gecko)",
    ]
    /// Opens this soon after sending are prefetches.
    public static let prefetchWindowSeconds: Double = 2

    /// Why this hit is not a person, or nil when it may be one.
    public static func reason(userAgent: String?, sentAt: Date?, now: Date) -> String? {
        if let sentAt, now.timeIntervalSince(sentAt) < prefetchWindowSeconds { return "within \(Int(prefetchWindowSeconds)) s of sending" }
        let agent = (userAgent ?? "").trimmingCharacters(in: .whitespaces).lowercased()
        if agent.isEmpty { return "no user agent" }
        if appleProxyAgents.contains(agent) { return "apple mail privacy protection" }
        if let proxy = proxyAgents.first(where: { agent.contains($0) }) { return "proxy user agent (\(proxy))" }
        return nil
    }
}

/// The 1×1 transparent GIF the open pixel answers with (43 bytes).
enum Pixel {
    static let gif: [UInt8] = [
        0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
        0xFF, 0xFF, 0xFF, 0x21, 0xF9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2C, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3B,
    ]
}
