-- Redis baseline for sessiond's "turn" workload: the same logical work as session.acquire and
-- session.complete, as a team would write it with Lua scripts on Redis. Loaded once with SCRIPT LOAD
-- and called with EVALSHA by redis.sh (through redis-benchmark).
--
--   EVALSHA sha 1 <session key> <mode> <holder> <leaseMs> <entropy> <inputTokens> <outputTokens> <costUsd>
--                                      <user message> <assistant message> [<lease token> <lease fence>]
--
-- Modes:
--   acquire      get-or-create the session hash and grant its lease (token, fence, holder, expiry) and
--                the resume/fresh decision; a live lease answers a lease_held error.
--   complete     check the lease proof (ARGV[10], ARGV[11]); record the turn: the reported CLI session id is
--                cli-<entropy>-<now> (a client would send the id its CLI printed); new head id (the chain list
--                grows when the id is new), counters (turns, tokens, cost, resumes, messages), two messages
--                pushed to a capped list (1000), lease released.
--   step         one half of a turn, so that redis-benchmark (one fixed command) can drive real two-EVAL
--                turns: odd calls are the `acquire` of a random key, and queue the proof (key, token, fence)
--                that the client would keep (bench:inflight list); even calls are the `complete` of the
--                queued turn, with that proof. Two EVALs per turn, strictly alternating; the queue costs one
--                RPUSH and one LPOP of a short string per turn.
--   settle       complete every turn a step run left open (run between benchmark points).
--   fused        acquire and complete in one EVAL (one round trip per turn): an upper bound for Redis.
--   prepopulate  KEYS[1] unused; ARGV[2], ARGV[3]: create sessions bench:%012d for i in [from, to), each
--                with one completed turn (so the benchmark's turns resume, as sessiond's do).
--
-- Data model: s:<key> hash (the session row), c:<key> list (the chain), m:<key> list (messages, newest
-- first, capped), sessions:idx sorted set (pk -> key, for listing newest first), sessions:pk counter,
-- stats hash (registry-wide counters). Only KEYS[1] is declared; the other names derive from it, which
-- standalone Redis allows (Redis Cluster would need hash tags and declared keys).

local MESSAGES_CAP = 1000
local DEFAULT_TTL_MS = 86400000

local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function uuidish(seed)
    local h = redis.sha1hex(seed)
    return string.sub(h, 1, 8) .. '-' .. string.sub(h, 9, 12) .. '-4' .. string.sub(h, 14, 16) .. '-8'
        .. string.sub(h, 18, 20) .. '-' .. string.sub(h, 21, 32)
end

-- The session as stored. sessiond never shows the lease token in a session object; here the client
-- drops that field (a Lua copy loop to strip it would cost Redis more than the HGETALL itself).
local function session_view(h)
    return redis.call('HGETALL', h)
end

local function acquire(key, holder, lease_ms, entropy, now)
    local h = 's:' .. key
    local f = redis.call('HMGET', h, 'id', 'status', 'cliSessionId', 'expiresAt', 'ttlSeconds', 'leaseToken',
        'leaseExpiresAt', 'leaseHolder', 'pendingFresh')
    local created = 0
    local ttl_ms = DEFAULT_TTL_MS
    if not f[1] then
        local pk = redis.call('INCR', 'sessions:pk')
        redis.call('HSET', h, 'pk', pk, 'id', uuidish('session:' .. key), 'key', key, 'tool', 'claude',
            'status', 'active', 'createdAt', now, 'lastUsedAt', now, 'expiresAt', now + ttl_ms,
            'ttlSeconds', ttl_ms / 1000, 'turnCount', 0, 'resumeAttempts', 0, 'resumeSuccesses', 0,
            'consecutiveFailures', 0, 'costUsd', 0, 'inputTokens', 0, 'outputTokens', 0, 'messageCount', 0,
            'leaseFence', 0)
        redis.call('ZADD', 'sessions:idx', pk, key)
        redis.call('HINCRBY', 'stats', 'sessions', 1)
        created = 1
        f = { nil, 'active', nil, tostring(now + ttl_ms), tostring(ttl_ms / 1000), nil, nil, nil, nil }
    else
        ttl_ms = tonumber(f[5]) * 1000
    end
    if f[6] and tonumber(f[7]) > now then
        return redis.error_reply('lease_held ' .. (f[8] or ''))
    end
    local head = f[3]
    local status = f[2]
    local action, reason = 'resume', nil
    if status == 'expired' or tonumber(f[4]) <= now then
        head, reason = nil, 'expired'
    elseif f[9] then
        reason = f[9]
    elseif status == 'non_resumable' then
        reason = 'non_resumable'
    elseif not head then
        reason = 'new'
    end
    if reason then action = 'fresh' end
    local fence = redis.call('HINCRBY', h, 'leaseFence', 1)
    local token = string.sub(redis.sha1hex(key .. ':' .. fence .. ':' .. now .. ':' .. entropy), 1, 32)
    local mode = action == 'resume' and 'resume' or ('fresh:' .. reason)
    redis.call('HSET', h, 'leaseToken', token, 'leaseHolder', holder, 'leaseExpiresAt', now + lease_ms,
        'turnMode', mode, 'status', 'active', 'lastUsedAt', now, 'expiresAt', now + ttl_ms)
    if not head then redis.call('HDEL', h, 'cliSessionId') end
    if action == 'fresh' then redis.call('HINCRBY', 'stats', 'freshStarts', 1) end
    return { created, token, fence, action, head or reason, session_view(h) }
end

local function complete(key, token, fence, cli_id, input_tokens, output_tokens, cost, user_msg, assistant_msg, now)
    local h = 's:' .. key
    local f = redis.call('HMGET', h, 'leaseToken', 'leaseFence', 'leaseExpiresAt', 'turnMode', 'cliSessionId',
        'messageCount', 'ttlSeconds')
    if not f[1] or f[1] ~= token or tonumber(f[2]) ~= tonumber(fence) or tonumber(f[3]) <= now then
        return redis.error_reply('stale_lease current fence ' .. tostring(f[2]))
    end
    local chain_extended = 0
    if cli_id ~= f[5] then
        redis.call('RPUSH', 'c:' .. key, cjson.encode({ cliSessionId = cli_id, at = now,
            reason = (f[4] == 'resume') and 'changed_by_cli' or 'created' }))
        chain_extended = 1
    end
    if f[4] == 'resume' then
        redis.call('HINCRBY', h, 'resumeAttempts', 1)
        redis.call('HINCRBY', h, 'resumeSuccesses', 1)
        redis.call('HINCRBY', 'stats', 'resumeAttempts', 1)
        redis.call('HINCRBY', 'stats', 'resumeSuccesses', 1)
    end
    redis.call('HINCRBY', h, 'turnCount', 1)
    redis.call('HINCRBY', h, 'inputTokens', input_tokens)
    redis.call('HINCRBY', h, 'outputTokens', output_tokens)
    redis.call('HINCRBYFLOAT', h, 'costUsd', cost)
    redis.call('HINCRBY', 'stats', 'turns', 1)
    local seq = tonumber(f[6] or '0')
    local m = 'm:' .. key
    redis.call('LPUSH', m,
        cjson.encode({ seq = seq + 1, role = 'user', content = user_msg, at = now }),
        cjson.encode({ seq = seq + 2, role = 'assistant', content = assistant_msg, outputTokens = output_tokens, at = now }))
    redis.call('LTRIM', m, 0, MESSAGES_CAP - 1)
    redis.call('HSET', h, 'cliSessionId', cli_id, 'messageCount', seq + 2, 'consecutiveFailures', 0,
        'lastUsedAt', now, 'expiresAt', now + tonumber(f[7]) * 1000)
    redis.call('HDEL', h, 'leaseToken', 'leaseHolder', 'leaseExpiresAt', 'turnMode', 'pendingFresh')
    return { chain_extended, session_view(h) }
end

local mode = ARGV[1]
local now = now_ms()

if mode == 'prepopulate' then
    local from, to = tonumber(ARGV[2]), tonumber(ARGV[3])
    local made = 0
    for i = from, to - 1 do
        local key = string.format('bench:%012d', i)
        if redis.call('EXISTS', 's:' .. key) == 0 then
            local a = acquire(key, 'prepopulate', 600000, i, now)
            complete(key, a[2], a[3], uuidish('cli:' .. key .. ':0'), 10, 20, '0.01', 'first question', 'first answer', now)
            made = made + 1
        end
    end
    return made
end

local key = KEYS[1]
local holder, lease_ms, entropy = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local input_tokens, output_tokens, cost = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local user_msg, assistant_msg = ARGV[8], ARGV[9]

if mode == 'acquire' then
    return acquire(key, holder, lease_ms, entropy, now)
elseif mode == 'complete' then
    return complete(key, ARGV[10], ARGV[11], 'cli-' .. entropy .. '-' .. now, input_tokens,
        output_tokens, cost, user_msg, assistant_msg, now)
elseif mode == 'step' then
    -- Odd calls acquire a random key and queue its proof (key, token, fence), as the client keeps it;
    -- even calls complete the queued turn with that proof. So two EVALs make each turn, strictly alternating.
    local n = redis.call('INCR', 'bench:steps')
    if n % 2 == 0 then
        local entry = redis.call('LPOP', 'bench:inflight')
        if entry then
            local k, token, fence = string.match(entry, '^(.*)|(%x+)|(%d+)$')
            redis.call('HINCRBY', 'stats', 'stepCompletes', 1)
            return complete(k, token, fence, 'cli-' .. entropy .. '-' .. now, input_tokens,
                output_tokens, cost, user_msg, assistant_msg, now)
        end
    end
    local a = acquire(key, holder, lease_ms, entropy, now)
    if a.err then return a end
    redis.call('RPUSH', 'bench:inflight', key .. '|' .. a[2] .. '|' .. a[3])
    redis.call('HINCRBY', 'stats', 'stepAcquires', 1)
    return a
elseif mode == 'settle' then
    -- Completes every turn a `step` run left open (between benchmark points).
    local done = 0
    while true do
        local entry = redis.call('LPOP', 'bench:inflight')
        if not entry then break end
        local k, token, fence = string.match(entry, '^(.*)|(%x+)|(%d+)$')
        complete(k, token, fence, 'cli-settle-' .. now, input_tokens, output_tokens, cost,
            user_msg, assistant_msg, now)
        done = done + 1
    end
    return done
elseif mode == 'fused' then
    local a = acquire(key, holder, lease_ms, entropy, now)
    if a.err then return a end
    local c = complete(key, a[2], a[3], 'cli-' .. entropy .. '-' .. now, input_tokens,
        output_tokens, cost, user_msg, assistant_msg, now)
    return { a[1], a[2], a[3], a[4], a[5], c[1], c[2] }
end
return redis.error_reply('unknown mode ' .. tostring(mode))
