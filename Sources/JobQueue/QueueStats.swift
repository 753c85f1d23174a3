import Foundation
import Redis

/// What `nurture queues` shows per queue.
public struct QueueStats: Sendable, Equatable, Codable {
    public var queue: String
    /// Waiting to be fetched.
    public var depth: Int
    /// Fetched by a worker, not yet acknowledged.
    public var inFlight: Int
    /// Waiting for a time (retries, scheduled).
    public var delayed: Int
    public var dead: Int
    public var paused: Bool
    public var processed: Int
    public var failed: Int
    public var retried: Int
    /// Processed in the last full minute.
    public var processedLastMinute: Int
    /// Age of the oldest waiting job in ms (0 when empty): the lag to autoscale on.
    public var lagMilliseconds: Int64
}

/// A job in the dead letters.
public struct DeadLetter: Sendable, Equatable, Codable {
    public var queue: String
    public var id: String
    public var kind: String
    public var payload: String
    public var attempts: Int
    public var reason: String
    public var lastError: String
    public var diedAtMilliseconds: Int64
}

/// A live worker process.
public struct WorkerStatus: Sendable, Equatable, Codable {
    public var name: String
    public var leaseExpiresInMilliseconds: Int64
    public var info: [String: String]
}

extension JobQueue {
    public func stats(on redis: RedisConnection) throws -> [QueueStats] {
        let queues = try knownQueues(on: redis)
        let paused = try pausedQueues(on: redis)
        let lastMinute = JobQueue.wallClockMilliseconds() / 60_000 - 1
        var commands: [RedisCommand] = []
        for q in queues {
            commands.append(RedisCommand("XLEN", .string(keys.stream(q))))
            commands.append(RedisCommand("XPENDING", .string(keys.stream(q)), .string(group)))
            commands.append(RedisCommand("ZCARD", .string(keys.delayed(q))))
            commands.append(RedisCommand("HLEN", .string(keys.dead(q))))
            commands.append(RedisCommand("HMGET", .string(keys.stats(q)), "processed", "failed", "retried"))
            commands.append(RedisCommand("GET", .string(keys.processedInMinute(q, minute: lastMinute))))
            commands.append(RedisCommand("XINFO", "GROUPS", .string(keys.stream(q))))
            commands.append(RedisCommand("XRANGE", .string(keys.stream(q)), "-", "+", "COUNT", 1))
        }
        let replies = try redis.pipeline(commands)
        let now = JobQueue.wallClockMilliseconds()
        var out: [QueueStats] = []
        for (index, q) in queues.enumerated() {
            let r = Array(replies[(index * 8)..<(index * 8 + 8)])
            let length = Int(r[0].int ?? 0)
            let pending = Int(r[1].array?.first?.int ?? 0)
            let totals = r[4].array ?? []
            // Lag: the group's last-delivered id vs the first undelivered entry is costly to find exactly; the
            // oldest entry in the stream (waiting or in flight) is a close, cheap upper bound.
            var lag: Int64 = 0
            if length - pending > 0, let first = r[7].array?.first?.array?.first?.string,
               let ms = Int64(first.split(separator: "-").first ?? "") {
                lag = max(0, now - ms)
            }
            out.append(QueueStats(queue: q, depth: max(0, length - pending), inFlight: pending, delayed: Int(r[2].int ?? 0),
                                  dead: Int(r[3].int ?? 0), paused: paused.contains(q),
                                  processed: Int(totals.first?.int ?? 0), failed: Int(totals.count > 1 ? totals[1].int ?? 0 : 0),
                                  retried: Int(totals.count > 2 ? totals[2].int ?? 0 : 0),
                                  processedLastMinute: Int(r[5].int ?? 0), lagMilliseconds: lag))
        }
        return out
    }

    public func deadLetters(queue: String? = nil, limit: Int = 100, on redis: RedisConnection) throws -> [DeadLetter] {
        let queues = try queue.map { [$0] } ?? knownQueues(on: redis)
        var out: [DeadLetter] = []
        for q in queues {
            let ids = (try redis.execute(RedisCommand("ZREVRANGE", .string(keys.deadIndex(q)), 0, .int(Int64(max(0, limit - 1))))).array ?? []).compactMap(\.string)
            if ids.isEmpty { continue }
            let raws = try redis.execute(RedisCommand("HMGET", [.string(keys.dead(q))] + ids.map { .string($0) })).array ?? []
            for (id, raw) in zip(ids, raws) {
                guard let text = raw.string, let data = text.data(using: .utf8),
                      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { continue }
                func s(_ k: String) -> String { (object[k] as? String) ?? (object[k].map { "\($0)" } ?? "") }
                out.append(DeadLetter(queue: q, id: id, kind: s("kind"), payload: s("payload"), attempts: Int(s("attempt")) ?? 0,
                                      reason: s("reason"), lastError: s("err"), diedAtMilliseconds: Int64(s("died_at")) ?? 0))
            }
        }
        return out.sorted { $0.diedAtMilliseconds > $1.diedAtMilliseconds }.prefix(limit).map { $0 }
    }

    /// Puts dead letters back on their queue with a fresh attempt count: one job by id, or all of a queue's.
    public func retryDeadLetters(queue: String? = nil, id: String? = nil, except: Set<String> = [],
                                 on redis: RedisConnection) throws -> Int {
        let queues = try (queue.map { [$0] } ?? knownQueues(on: redis)).filter { !except.contains($0) }
        var total = 0
        for q in queues {
            let reply = try redis.evaluate(QueueScripts.redrive, keys: [.string(keys.dead(q)), .string(keys.deadIndex(q)), .string(keys.stream(q))],
                                           arguments: [.string(id ?? "all"), .int(JobQueue.wallClockMilliseconds())])
            total += Int(reply.int ?? 0)
        }
        return total
    }

    /// Deletes dead letters: one by id, or all of a queue's (or every queue's).
    public func purgeDeadLetters(queue: String? = nil, id: String? = nil, on redis: RedisConnection) throws -> Int {
        let queues = try queue.map { [$0] } ?? knownQueues(on: redis)
        var total = 0
        for q in queues {
            if let id {
                let removed = try redis.pipeline([RedisCommand("HDEL", .string(keys.dead(q)), .string(id)),
                                                  RedisCommand("ZREM", .string(keys.deadIndex(q)), .string(id))])
                total += Int(removed.first?.int ?? 0)
            } else {
                let count = try redis.execute(RedisCommand("HLEN", .string(keys.dead(q)))).int ?? 0
                _ = try redis.pipeline([RedisCommand("DEL", .string(keys.dead(q))), RedisCommand("DEL", .string(keys.deadIndex(q)))])
                total += Int(count)
            }
        }
        return total
    }

    public func workers(on redis: RedisConnection) throws -> [WorkerStatus] {
        let reply = try redis.execute(RedisCommand("ZRANGE", .string(keys.workers), 0, -1, "WITHSCORES")).array ?? []
        let now = try redis.execute("TIME").array.flatMap { parts -> Int64? in
            guard parts.count == 2, let s = parts[0].int, let us = parts[1].int else { return nil }
            return s * 1000 + us / 1000
        } ?? JobQueue.wallClockMilliseconds()
        var out: [WorkerStatus] = []
        var i = 0
        while i + 1 < reply.count {
            let name = reply[i].string ?? ""
            let lease = reply[i + 1].int ?? Int64(Double(reply[i + 1].string ?? "") ?? 0)
            i += 2
            if lease < now { continue }
            let fields = try redis.execute(RedisCommand("HGETALL", .string(keys.workerInfo(name)))).array ?? []
            var info: [String: String] = [:]
            var j = 0
            while j + 1 < fields.count { info[fields[j].string ?? ""] = fields[j + 1].string ?? ""; j += 2 }
            out.append(WorkerStatus(name: name, leaseExpiresInMilliseconds: lease - now, info: info))
        }
        return out
    }
}
