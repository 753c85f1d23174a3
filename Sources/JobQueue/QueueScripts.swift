import Redis

/// The Lua scripts behind every multi-key queue operation. Each runs atomically on the server, takes all the keys
/// it touches in KEYS (all under one hash tag, see `QueueKeys`), and reads time from Redis (`TIME`), so hosts with
/// skewed clocks agree on when a delayed job is due and when a worker's lease ran out.
enum QueueScripts {
    /// Shared Lua helpers, prepended to the scripts that need them.
    static let common = """
    local function now_ms()
      local t = redis.call('TIME')
      return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    local function fields_to_map(f)
      local m = {}
      for k = 1, #f, 2 do m[f[k]] = f[k + 1] end
      return m
    end
    local function map_to_xadd_args(m)
      local order = {'jid', 'kind', 'payload', 'attempt', 'max', 'enq', 'timeout', 'rate', 'lost', 'err'}
      local a = {}
      for _, k in ipairs(order) do
        if m[k] ~= nil and m[k] ~= cjson.null then a[#a + 1] = k; a[#a + 1] = tostring(m[k]) end
      end
      return a
    end
    """

    /// Fetch in strict priority order, skipping paused queues, without blocking.
    /// KEYS[1] paused hash, KEYS[2..n] streams in priority order.
    /// ARGV[1] group, ARGV[2] consumer, ARGV[3] count, ARGV[4..] queue names (parallel to the streams).
    /// Returns a flat list: queue name, entries, queue name, entries, ...
    static let fetch = RedisScript(name: "queue.fetch", source: """
    local want = tonumber(ARGV[3])
    local out = {}
    for i = 2, #KEYS do
      if want <= 0 then break end
      local q = ARGV[i + 2]
      if redis.call('HEXISTS', KEYS[1], q) == 0 then
        local r = redis.pcall('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want, 'STREAMS', KEYS[i], '>')
        if type(r) == 'table' and r.err then
          if string.find(r.err, 'NOGROUP', 1, true) then
            redis.call('XGROUP', 'CREATE', KEYS[i], ARGV[1], '0', 'MKSTREAM')
            r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want, 'STREAMS', KEYS[i], '>')
          else
            return redis.error_reply(r.err)
          end
        end
        if r and r[1] then
          local entries = r[1][2]
          if #entries > 0 then
            out[#out + 1] = q
            out[#out + 1] = entries
            want = want - #entries
          end
        end
      end
    end
    return out
    """)

    /// Acknowledge finished jobs: XACK + XDEL (the stream only ever holds waiting and in-flight jobs, so Redis
    /// memory stays flat under steady load) and count the ones still pending (acknowledging twice counts once).
    /// KEYS[1] stream, KEYS[2] stats, KEYS[3] this minute's counter. ARGV[1] group, ARGV[2..] entry ids.
    static let complete = RedisScript(name: "queue.complete", source: """
    local n = #ARGV - 1
    if n <= 0 then return 0 end
    local acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
    redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
    -- Count only what this call acknowledged: a retried acknowledgement (reply lost in a Redis restart) or a
    -- job meanwhile reclaimed from this worker must not be counted twice.
    if acked > 0 then
      redis.call('HINCRBY', KEYS[2], 'processed', acked)
      redis.call('INCRBY', KEYS[3], acked)
      redis.call('EXPIRE', KEYS[3], 7200)
    end
    return acked
    """)

    /// A run failed: schedule the retry (delayed set) or dead-letter it, and remove the entry.
    /// KEYS[1] stream, KEYS[2] delayed, KEYS[3] dead, KEYS[4] dead index, KEYS[5] stats.
    /// ARGV[1] group, ARGV[2] entry id, ARGV[3] 'retry' | 'dead', ARGV[4] delay ms, ARGV[5] record JSON, ARGV[6] job id.
    /// Returns the time (ms, Redis clock) the retry is due, or of death.
    static let fail = RedisScript(name: "queue.fail", source: common + """

    local now = now_ms()
    redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
    redis.call('XDEL', KEYS[1], ARGV[2])
    redis.call('HINCRBY', KEYS[5], 'failed', 1)
    if ARGV[3] == 'dead' then
      redis.call('HSET', KEYS[3], ARGV[6], ARGV[5])
      redis.call('ZADD', KEYS[4], now, ARGV[6])
      redis.call('HINCRBY', KEYS[5], 'dead', 1)
      return now
    end
    local due = now + tonumber(ARGV[4])
    redis.call('ZADD', KEYS[2], due, ARGV[5])
    redis.call('HINCRBY', KEYS[5], 'retried', 1)
    return due
    """)

    /// Put jobs back at the tail of their stream (graceful shutdown hands back jobs it will not start).
    /// KEYS[1] stream. ARGV[1] group, ARGV[2..] entry ids. Returns how many went back.
    static let handBack = RedisScript(name: "queue.hand-back", source: """
    local n = 0
    for i = 2, #ARGV do
      local e = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])
      if e[1] then
        redis.call('XADD', KEYS[1], '*', unpack(e[1][2]))
        n = n + 1
      end
      redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
      redis.call('XDEL', KEYS[1], ARGV[i])
    end
    return n
    """)

    /// Enqueue with a delay and/or a unique key. KEYS[1] stream, KEYS[2] delayed, KEYS[3] queues set,
    /// KEYS[4] unique guard (optional). ARGV[1] queue, ARGV[2] delay ms, ARGV[3] record JSON,
    /// ARGV[4] unique ttl ms, ARGV[5] job id, ARGV[6..] stream fields.
    /// Returns 1 if enqueued, 0 if a unique duplicate was dropped.
    static let enqueue = RedisScript(name: "queue.enqueue", source: common + """

    if KEYS[4] then
      if not redis.call('SET', KEYS[4], ARGV[5], 'NX', 'PX', ARGV[4]) then return 0 end
    end
    redis.call('SADD', KEYS[3], ARGV[1])
    local delay = tonumber(ARGV[2])
    if delay > 0 then
      redis.call('ZADD', KEYS[2], now_ms() + delay, ARGV[3])
    else
      redis.call('XADD', KEYS[1], '*', unpack(ARGV, 6))
    end
    return 1
    """)

    /// Move due delayed jobs into their streams, at most ARGV[1] per call. KEYS: (delayed, stream) pairs.
    /// Atomic, so any number of schedulers may run it at once and each job moves exactly once.
    /// Returns {moved, ms until the next job is due or -1}.
    static let promote = RedisScript(name: "queue.promote", source: common + """

    local now = now_ms()
    local limit = tonumber(ARGV[1])
    local moved = 0
    local next_due = nil
    for i = 1, #KEYS, 2 do
      if moved < limit then
        local items = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', now, 'LIMIT', 0, limit - moved)
        for _, m in ipairs(items) do
          local ok, job = pcall(cjson.decode, m)
          if ok and type(job) == 'table' and job.kind then
            redis.call('XADD', KEYS[i + 1], '*', unpack(map_to_xadd_args(job)))
            redis.call('ZREM', KEYS[i], m)
            moved = moved + 1
          else
            -- An unreadable member can never run: park it a day ahead, visible, instead of dropping it.
            redis.call('ZADD', KEYS[i], now + 86400000, m)
          end
        end
      end
      local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
      if first[2] then
        local due = tonumber(first[2])
        if next_due == nil or due < next_due then next_due = due end
      end
    end
    if next_due == nil then return {moved, -1} end
    return {moved, math.max(0, next_due - now)}
    """)

    /// Reclaim the in-flight jobs of dead workers (lease expired and idle at least ARGV[2] ms): each goes back
    /// to its stream with `lost` + 1, or to the dead letters once lost > ARGV[3] (a poison job that kills workers).
    /// KEYS[1] workers zset, then per queue: stream, dead, dead index, stats.
    /// ARGV[1] group, ARGV[2] min idle ms, ARGV[3] max lost, ARGV[4] per-consumer limit, ARGV[5..] queue names.
    /// Returns {reclaimed, dead-lettered}.
    static let reclaim = RedisScript(name: "queue.reclaim", source: common + """

    local now = now_ms()
    local group = ARGV[1]
    local min_idle = tonumber(ARGV[2])
    local max_lost = tonumber(ARGV[3])
    local limit = tonumber(ARGV[4])
    local reclaimed, dead = 0, 0
    for i = 2, #KEYS, 4 do
      local s, dh, di, st = KEYS[i], KEYS[i + 1], KEYS[i + 2], KEYS[i + 3]
      local q = ARGV[5 + (i - 2) / 4]
      local consumers = redis.pcall('XINFO', 'CONSUMERS', s, group)
      if type(consumers) == 'table' and not consumers.err then
        for _, c in ipairs(consumers) do
          local info = fields_to_map(c)
          local name = info['name']
          -- A worker's slots consume as '<worker>#<slot>'; the lease is the worker's.
          local lease = redis.call('ZSCORE', KEYS[1], string.match(name, '^(.+)#%d+$') or name)
          local alive = lease and tonumber(lease) > now
          if not alive and tonumber(info['idle']) >= min_idle then
            local pending = redis.call('XPENDING', s, group, '-', '+', limit, name)
            for _, p in ipairs(pending) do
              local id = p[1]
              local e = redis.call('XRANGE', s, id, id)
              redis.call('XACK', s, group, id)
              redis.call('XDEL', s, id)
              if e[1] then
                local job = fields_to_map(e[1][2])
                local lost = (tonumber(job['lost']) or 0) + 1
                job['lost'] = lost
                job['err'] = 'worker ' .. name .. ' stopped heartbeating while running this job'
                if lost > max_lost then
                  job['queue'] = q
                  job['reason'] = 'lost ' .. lost .. ' times: every worker running it died (poison job?)'
                  job['died_at'] = tostring(now)
                  redis.call('HSET', dh, job['jid'] or id, cjson.encode(job))
                  redis.call('ZADD', di, now, job['jid'] or id)
                  redis.call('HINCRBY', st, 'dead', 1)
                  dead = dead + 1
                else
                  redis.call('XADD', s, '*', unpack(map_to_xadd_args(job)))
                  reclaimed = reclaimed + 1
                end
              end
            end
            if #pending < limit then
              redis.call('XGROUP', 'DELCONSUMER', s, group, name)
            end
          end
        end
      end
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 3600000)
    return {reclaimed, dead}
    """)

    /// Register or extend a worker's lease. KEYS[1] workers zset, KEYS[2] worker info hash.
    /// ARGV[1] name, ARGV[2] lease ms, ARGV[3..] info field/value pairs.
    static let heartbeat = RedisScript(name: "queue.heartbeat", source: common + """

    local now = now_ms()
    local lease = tonumber(ARGV[2])
    redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
    if #ARGV > 2 then redis.call('HSET', KEYS[2], unpack(ARGV, 3)) end
    redis.call('HSET', KEYS[2], 'seen_ms', now)
    redis.call('PEXPIRE', KEYS[2], lease * 3)
    return now
    """)

    /// Token bucket shared by the fleet: one key, one call. KEYS[1] bucket. ARGV[1] tokens per second,
    /// ARGV[2] burst (bucket size), ARGV[3] tokens wanted. Returns 0 when granted, else ms to wait.
    static let takeToken = RedisScript(name: "queue.take-token", source: """
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    local rate = tonumber(ARGV[1])
    local burst = tonumber(ARGV[2])
    local want = tonumber(ARGV[3])
    local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
    local tokens = tonumber(b[1])
    local ts = tonumber(b[2])
    if tokens == nil then tokens = burst; ts = now end
    tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000000)
    local wait = 0
    if tokens >= want then
      tokens = tokens - want
    else
      wait = math.ceil((want - tokens) * 1000 / rate)
    end
    redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
    redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 60000)
    return wait
    """)

    /// Re-drive dead letters into their stream with a fresh attempt count. KEYS[1] dead, KEYS[2] dead index,
    /// KEYS[3] stream. ARGV[1] 'all' or a job id, ARGV[2] enqueue time ms. Returns how many were re-driven.
    static let redrive = RedisScript(name: "queue.redrive", source: common + """

    local ids
    if ARGV[1] == 'all' then ids = redis.call('ZRANGE', KEYS[2], 0, -1) else ids = {ARGV[1]} end
    local n = 0
    for _, id in ipairs(ids) do
      local raw = redis.call('HGET', KEYS[1], id)
      if raw then
        local job = cjson.decode(raw)
        job['attempt'] = '1'
        job['lost'] = nil
        job['err'] = nil
        redis.call('XADD', KEYS[3], '*', unpack(map_to_xadd_args(job)))
        redis.call('HDEL', KEYS[1], id)
        redis.call('ZREM', KEYS[2], id)
        n = n + 1
      end
    end
    return n
    """)

    static let all: [RedisScript] = [fetch, complete, fail, handBack, enqueue, promote, reclaim, heartbeat, takeToken, redrive]
}
