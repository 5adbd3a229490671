-- Redis baseline for sessiond's "read" workload, list half: one page of sessions, newest first, like
-- session.list {limit, cursor}. The get half is a plain HGETALL s:<key> (see redis.sh).
--
--   EVALSHA sha 0 list <cursor> <limit>
--
-- <cursor> is "first" for the first page (what sessiond-bench's read workload asks for), or a number: a
-- position in the sessions:idx sorted set (pk -> key), taken modulo the largest pk (redis-benchmark passes
-- __rand_int__ for a random page). Returns {sessions (each the HGETALL of its hash; the client drops the
-- lease token, which sessiond never shows), nextCursor or false}.
local mode = ARGV[1]
if mode ~= 'list' then return redis.error_reply('unknown mode ' .. tostring(mode)) end
local limit = tonumber(ARGV[3]) or 50
local upper = '+inf'
if ARGV[2] ~= 'first' then
    local maxpk = tonumber(redis.call('GET', 'sessions:pk') or '0')
    upper = '(' .. ((tonumber(ARGV[2]) % math.max(maxpk, 1)) + limit + 1)
end
local keys = redis.call('ZREVRANGEBYSCORE', 'sessions:idx', upper, '-inf', 'WITHSCORES', 'LIMIT', 0, limit + 1)
local sessions = {}
local next_cursor = false
for i = 1, #keys, 2 do
    if #sessions == limit then
        next_cursor = keys[i - 1]
        break
    end
    sessions[#sessions + 1] = redis.call('HGETALL', 's:' .. keys[i])
end
return { sessions, next_cursor }
