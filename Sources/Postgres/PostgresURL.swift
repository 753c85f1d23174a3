import Foundation

/// Where PostgreSQL is, and how to print that address safely.
public enum PostgresURL {
    public static let defaultURL = "postgres://127.0.0.1:5432/nurture"

    /// `NURTURE_DATABASE_URL`, then `DATABASE_URL`, else `postgres://127.0.0.1:5432/nurture`. Any libpq URI or
    /// `key=value` conninfo works (`?sslmode=require`, `connect_timeout=5`, `options=-csearch_path%3Dapp`, ...).
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let url = env["NURTURE_DATABASE_URL"], !url.isEmpty { return url }
        if let url = env["DATABASE_URL"], !url.isEmpty { return url }
        return defaultURL
    }

    /// The URL or conninfo with every password replaced by `***`: the `user:password@` of a URI, and any
    /// `password=` parameter (URI query or `key=value` conninfo, quoted or not). For logs and errors.
    public static func redacted(_ url: String) -> String {
        var text = url
        if let scheme = text.range(of: "://") {
            let authorityStart = scheme.upperBound
            let authorityEnd = text[authorityStart...].firstIndex(where: { $0 == "/" || $0 == "?" }) ?? text.endIndex
            if let at = text[authorityStart..<authorityEnd].lastIndex(of: "@"),
               let colon = text[authorityStart..<at].firstIndex(of: ":") {
                text.replaceSubrange(text.index(after: colon)..<at, with: "***")
            }
        }
        return redactPasswordParameters(text)
    }

    /// Replaces the value of each `password=` (case-insensitive, after start, `?`, `&` or whitespace).
    private static func redactPasswordParameters(_ text: String) -> String {
        let chars = Array(text)
        var out = ""
        out.reserveCapacity(chars.count)
        var i = 0
        let key = Array("password")
        while i < chars.count {
            let atBoundary = i == 0 || chars[i - 1] == "?" || chars[i - 1] == "&" || chars[i - 1].isWhitespace
            if atBoundary, i + key.count <= chars.count,
               zip(chars[i..<(i + key.count)], key).allSatisfy({ $0.lowercased() == String($1) }) {
                var j = i + key.count
                while j < chars.count && chars[j] == " " { j += 1 }
                if j < chars.count && chars[j] == "=" {
                    out += String(chars[i...j]) + "***"
                    j += 1
                    while j < chars.count && chars[j] == " " { j += 1 }
                    if j < chars.count && chars[j] == "'" {
                        j += 1
                        while j < chars.count && chars[j] != "'" { j += chars[j] == "\\" ? 2 : 1 }
                        j += 1
                    } else {
                        while j < chars.count && !chars[j].isWhitespace && chars[j] != "&" { j += 1 }
                    }
                    i = min(j, chars.count)
                    continue
                }
            }
            out.append(chars[i])
            i += 1
        }
        return out
    }
}
