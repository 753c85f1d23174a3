#if canImport(Glibc)
import Glibc
#endif
internal import CLibpq

/// Bulk paths: `COPY ... FROM STDIN` and pipeline mode.
extension PostgresConnection {
    /// Bytes buffered before each `PQputCopyData`.
    static let copyChunkBytes = 256 * 1024

    /// Streams `rows` into `COPY ... FROM STDIN` (text format: tab-separated, `\N` for NULL, with `\`, tab,
    /// newline and carriage return escaped) in 256 KiB chunks, and returns the number of rows copied.
    ///
    /// `copySQL` is the COPY statement, e.g. `COPY contacts (id, email) FROM STDIN`; it must use the default text
    /// format. Each row must have one element per listed column. A bad row makes the whole COPY fail (nothing
    /// is copied) with the server's error naming the line.
    @discardableResult
    public func copyIn(_ copySQL: String, rows: some Sequence<[String?]>) throws(PostgresError) -> Int {
        let c = try ensureConnected()
        guard let start = PQexec(c, copySQL) else {
            throw connectionFailure(c, message: PostgresConnection.errorMessage(c))
        }
        if PQresultStatus(start) != PGRES_COPY_IN {
            if PQresultStatus(start) == PGRES_COMMAND_OK || PQresultStatus(start) == PGRES_TUPLES_OK {
                PQclear(start)
                throw PostgresError(.usage, "copyIn needs a COPY ... FROM STDIN statement")
            }
            _ = try finish(start, c, rows: false)  // throws the server's error (or the COPY-state usage error)
            throw PostgresError(.usage, "copyIn needs a COPY ... FROM STDIN statement")
        }
        PQclear(start)

        var buffer: [UInt8] = []
        buffer.reserveCapacity(PostgresConnection.copyChunkBytes + 64 * 1024)
        var sendFailed = false
        func send() -> Bool {
            let sent = buffer.withUnsafeBytes { raw in
                PQputCopyData(c, raw.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(raw.count))
            }
            buffer.removeAll(keepingCapacity: true)
            return sent == 1
        }
        for row in rows {
            var first = true
            for field in row {
                if !first { buffer.append(0x09) }
                first = false
                if let field { PostgresConnection.appendCopyText(field, to: &buffer) }
                else { buffer.append(0x5C); buffer.append(UInt8(ascii: "N")) }
            }
            buffer.append(0x0A)
            if buffer.count >= PostgresConnection.copyChunkBytes && !send() { sendFailed = true; break }
        }
        // -1 from PQputCopyData with a live connection means the server already ended the COPY with an error:
        // the error comes from PQgetResult below.
        if !sendFailed && !buffer.isEmpty && !send() { sendFailed = true }
        if !sendFailed { _ = PQputCopyEnd(c, nil) }
        if PQstatus(c) != CONNECTION_OK {
            throw connectionFailure(c, message: PostgresConnection.errorMessage(c))
        }
        var copied = 0
        var failure: PostgresError? = nil
        while let result = PQgetResult(c) {
            if failure == nil {
                if PQresultStatus(result) == PGRES_COMMAND_OK {
                    copied = PostgresConnection.convert(result, rows: false).affectedRows
                } else if PQresultStatus(result) == PGRES_COPY_IN {
                    _ = PQputCopyEnd(c, "copyIn could not send its data")
                } else {
                    failure = error(from: result, c)
                }
            }
            PQclear(result)
            if connection == nil { break }
        }
        if let failure { throw failure }
        if PQstatus(c) != CONNECTION_OK { throw connectionFailure(c, message: PostgresConnection.errorMessage(c)) }
        transactionStatus = PQtransactionStatus(c)
        return copied
    }

    /// Appends `text` in COPY text format: `\` → `\\`, tab → `\t`, newline → `\n`, carriage return → `\r`.
    /// Runs without special bytes are appended in one copy.
    @inline(__always)
    static func appendCopyText(_ text: String, to buffer: inout [UInt8]) {
        func escape(_ bytes: UnsafeBufferPointer<UInt8>) {
            var runStart = 0
            for i in 0..<bytes.count {
                let b = bytes[i]
                guard b == 0x5C || b == 0x09 || b == 0x0A || b == 0x0D else { continue }
                if i > runStart { buffer.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<i])) }
                buffer.append(0x5C)
                switch b {
                case 0x09: buffer.append(UInt8(ascii: "t"))
                case 0x0A: buffer.append(UInt8(ascii: "n"))
                case 0x0D: buffer.append(UInt8(ascii: "r"))
                default: buffer.append(0x5C)
                }
                runStart = i + 1
            }
            if runStart < bytes.count { buffer.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart...])) }
        }
        if text.utf8.withContiguousStorageIfAvailable(escape) == nil {
            var copy = text
            copy.withUTF8(escape)
        }
    }

    /// Sends all statements in one go in libpq pipeline mode and reads all results: one round trip.
    /// Outside a transaction block the statements run as one implicit transaction (a failure rolls back all of
    /// them); inside `transaction` they join it. The first failing statement's error is thrown after the
    /// remaining results are drained (the statements after it did not run), leaving the connection usable.
    public func pipeline(_ statements: [(String, [PostgresValue])]) throws(PostgresError) -> [PostgresResult] {
        if statements.isEmpty { return [] }
        var encoded: [EncodedParameters] = []
        encoded.reserveCapacity(statements.count)
        for (_, parameters) in statements { encoded.append(try EncodedParameters(parameters)) }
        let c = try ensureConnected()
        // Repeated statements are executed by name; any preparing happens here, before the pipeline starts.
        var names: [String?] = []
        names.reserveCapacity(statements.count)
        for (index, statement) in statements.enumerated() {
            names.append(try cachedStatementName(StatementKey(sql: statement.0, types: encoded[index].types), c))
        }
        guard PQenterPipelineMode(c) == 1 else {
            throw PostgresError(.usage, "cannot enter pipeline mode: \(PostgresConnection.errorMessage(c))")
        }
        // Non-blocking while sending, reading results as they come: a big pipeline cannot deadlock with both
        // sides' socket buffers full.
        _ = PQsetnonblocking(c, 1)
        for (index, statement) in statements.enumerated() {
            let sent = encoded[index].withPointers { count, types, values, lengths, formats in
                if let name = names[index] {
                    PQsendQueryPrepared(c, name, count, values, lengths, formats, 0)
                } else {
                    PQsendQueryParams(c, statement.0, count, types, values, lengths, formats, 0)
                }
            }
            if sent != 1 { throw abandonPipeline(c) }
        }
        if PQpipelineSync(c) != 1 { throw abandonPipeline(c) }
        while true {
            let flushed = PQflush(c)
            if flushed == 0 { break }
            if flushed < 0 { throw abandonPipeline(c) }
            var descriptor = pollfd(fd: PQsocket(c), events: Int16(POLLIN | POLLOUT), revents: 0)
            _ = poll(&descriptor, 1, 1_000)
            if descriptor.revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 && PQconsumeInput(c) != 1 {
                throw abandonPipeline(c)
            }
        }
        _ = PQsetnonblocking(c, 0)

        var results: [PostgresResult] = []
        results.reserveCapacity(statements.count)
        var firstError: PostgresError? = nil
        for _ in statements.indices {
            guard let result = PQgetResult(c) else { throw abandonPipeline(c) }
            let status = PQresultStatus(result)
            if status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK || status == PGRES_EMPTY_QUERY {
                results.append(PostgresConnection.convert(result, rows: true))
            } else if status == PGRES_PIPELINE_ABORTED {
                results.append(PostgresResult(storage: .empty, affectedRows: 0))
            } else {
                let failure = error(from: result, c)
                firstError = firstError ?? failure
                if connection == nil { PQclear(result); throw failure }
            }
            PQclear(result)
            // Each statement's results end with a NULL.
            while let extra = PQgetResult(c) { PQclear(extra) }
        }
        guard let sync = PQgetResult(c) else { throw abandonPipeline(c) }
        let syncStatus = PQresultStatus(sync)
        PQclear(sync)
        if syncStatus != PGRES_PIPELINE_SYNC {
            if syncStatus == PGRES_FATAL_ERROR && PQstatus(c) != CONNECTION_OK { throw abandonPipeline(c) }
            throw abandonPipeline(c)
        }
        if PQexitPipelineMode(c) != 1 {
            while let extra = PQgetResult(c) { PQclear(extra) }
            if PQexitPipelineMode(c) != 1 { throw abandonPipeline(c) }
        }
        transactionStatus = PQtransactionStatus(c)
        if let firstError {
            // A statement the server no longer has (or cannot re-plan) is prepared afresh next time.
            // Outside a transaction block the pipeline ran as one implicit transaction, rolled back by the error:
            // run it again as text.
            if PostgresConnection.isStaleStatement(firstError) && names.contains(where: { $0 != nil }) {
                for (index, statement) in statements.enumerated() where names[index] != nil {
                    forgetStatement(StatementKey(sql: statement.0, types: encoded[index].types))
                }
                if transactionStatus == PQTRANS_IDLE && !isInsideTransactionBlock { return try pipeline(statements) }
            }
            throw firstError
        }
        return results
    }

    /// A pipeline that cannot be completed leaves the session in an unknown state: drop it.
    private func abandonPipeline(_ c: OpaquePointer) -> PostgresError {
        let message = PostgresConnection.errorMessage(c)
        return connectionFailure(c, message: message.isEmpty ? "pipeline failed" : message)
    }
}
