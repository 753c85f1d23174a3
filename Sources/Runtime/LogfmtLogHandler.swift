import Foundation
import Logging

/// One line per log event in logfmt (`ts=... level=info logger=nurture.worker msg="job failed" queue=default`),
/// machine-parsable by Loki, Vector, Datadog and friends, still readable by people. Written to stderr with a
/// single write(2) per line so lines from many threads never interleave.
public struct LogfmtLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String

    public init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "ts=\(LogfmtLogHandler.timestamp()) level=\(event.level.rawValue) logger=\(label) msg="
        LogfmtLogHandler.appendValue(event.message.description, to: &line)
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        for key in merged.keys.sorted() {
            line += " \(key)="
            LogfmtLogHandler.appendValue("\(merged[key]!)", to: &line)
        }
        line += "\n"
        var bytes = Array(line.utf8)
        bytes.withUnsafeMutableBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(2, raw.baseAddress! + offset, raw.count - offset)
                if n <= 0 { break }
                offset += n
            }
        }
    }

    static func appendValue(_ value: String, to line: inout String) {
        let needsQuotes = value.isEmpty || value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline || $0 == "\\" })
        guard needsQuotes else { line += value; return }
        line += "\""
        for ch in value {
            switch ch {
            case "\"": line += "\\\""
            case "\\": line += "\\\\"
            case "\n": line += "\\n"
            case "\r": line += "\\r"
            case "\t": line += "\\t"
            default: line.append(ch)
            }
        }
        line += "\""
    }

    public static func appendValueForTesting(_ value: String, to line: inout String) { appendValue(value, to: &line) }

    static func timestamp() -> String {
        var tv = timeval()
        gettimeofday(&tv, nil)
        var tmValue = tm()
        var seconds = tv.tv_sec
        gmtime_r(&seconds, &tmValue)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tmValue.tm_year + 1900, tmValue.tm_mon + 1, tmValue.tm_mday,
                      tmValue.tm_hour, tmValue.tm_min, tmValue.tm_sec, Int(tv.tv_usec / 1000))
    }

    /// Installs this handler for every logger in the process (once, at startup).
    public static func bootstrap(level: Logger.Level) {
        LoggingSystem.bootstrap { label in LogfmtLogHandler(label: label, level: level) }
    }
}
