package redislog

import "github.com/redis/go-redis/v9"

// appendScript appends events to the logs of one or more runs,
// atomically for each run: sequence numbers stay gapless whoever calls it,
// and a retried call (its reply lost) adds nothing twice (events at seqs
// the log has, from the same writer, are skipped). It returns, for each
// run in order, the run's last seq or an error reply: ENDED (the log has
// ended), CONFLICT (another writer's events hold those seqs), or the error
// of a command that failed (that run's only: the others' outcomes stand).
//
// KEYS are two per run: its stream, its meta hash. ARGV: [1] max bytes,
// [2] ms to live while open, [3] ms to live once ended, [4] the prefix of
// the channels to publish a run's new last seq on (followed by ":end"
// when the log ends; the channel ends with the run ID, taken from the
// stream's key), [5] the length of the keys' prefix, [6] the writer (the
// Log appending), [7] the bytes an event counts besides its type and data,
// [8] the caller's clock in ms, [9] how old, in ms, an open log's expiry
// may be before it is set again. Then, per run: the seq of the first event
// (0: right after the last one), a token naming this call when that is 0
// (empty otherwise), "1" when the last event is terminal, "1" when the
// first event must be the log's next (its seq expected by the caller:
// CONFLICT otherwise, and no head-less start), the number of events, then
// one type, data pair per event.
//
// Per run and call it runs HMGET, an XADD per event, HSET and PUBLISH;
// PEXPIRE only when the log starts, ends, or its expiry is refresh old,
// rather than twice per call; XREVRANGE only when the log has no books.
// Either key can go without the other (an eviction, an operator's DEL):
// the log then starts afresh after the last seq either key still knows,
// so no seq is used for two events. A retried call whose books were lost
// since it was applied finds its own events in the stream (XRANGE) and
// starts the log afresh from them, with the same events at the same seqs.
var appendScript = redis.NewScript(`
local maxb, ttlOpen, ttlEnd = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local notify, klen, writer = ARGV[4], tonumber(ARGV[5]), ARGV[6]
local ovh, now, refresh = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])

-- same tells whether the stream kev holds, at seqs from to to, the
-- events of the run header at ARGV[a] from its first: a retried call
-- (its reply lost) whose books were lost since, not another writer's.
local function same(kev, from, to, a)
  local es = redis.call('XRANGE', kev, '0-' .. from, '0-' .. to)
  if #es ~= to - from + 1 then
    return false
  end
  for j, e in ipairs(es) do
    local i = a + 5 + 2 * (j - 1)
    if e[2][2] ~= ARGV[i] or e[2][4] ~= ARGV[i + 1] then
      return false
    end
  end
  return true
end

-- one appends the events of the run whose keys are KEYS[k], KEYS[k+1],
-- its header ARGV[a .. a+4] followed by its events; it returns the run's
-- last seq or an error reply.
local function one(k, a)
  local kev, kmeta = KEYS[k], KEYS[k + 1]
  local seq, token, terminal, strict = tonumber(ARGV[a]), ARGV[a + 1], ARGV[a + 2] == '1', ARGV[a + 3] == '1'
  local n = tonumber(ARGV[a + 4])
  local m = redis.call('HMGET', kmeta, 'first', 'last', 'bytes', 'end', 'w', 'tok', 'tokl', 'xp')
  local exists = m[2] ~= false
  local first, last, bytes = 1, 0, 0
  local fresh = not exists
  if exists then
    first, last, bytes = tonumber(m[1]), tonumber(m[2]), tonumber(m[3])
  else
    -- No books: a new log, or books lost (evicted, deleted) while the
    -- stream stays. The log then starts after the stream's last event,
    -- so that no seq a reader had is used again for another event.
    local tail = redis.call('XREVRANGE', kev, '+', '-', 'COUNT', 1)
    if #tail > 0 then
      last = tonumber(string.sub(tail[1][1], 3))
    end
  end
  if strict and seq ~= last + 1 then
    if m[4] then
      return redis.error_reply('ENDED the log ended at ' .. m[4])
    end
    return redis.error_reply('CONFLICT the next event is ' .. (last + 1) .. ', not ' .. seq)
  end
  if seq == 0 then
    if token ~= '' and m[6] == token then
      return tonumber(m[7])
    end
    if m[4] then
      return redis.error_reply('ENDED the log ended at ' .. m[4])
    end
    seq = last + 1
  elseif seq <= last and m[5] ~= writer and not (fresh and same(kev, seq, math.min(last, seq + n - 1), a)) then
    if m[4] then
      return redis.error_reply('ENDED the log ended at ' .. m[4])
    end
    return redis.error_reply('CONFLICT another writer appended events ' .. seq .. ' to ' .. last)
  elseif m[4] then
    if seq + n - 1 <= last then
      return last
    end
    return redis.error_reply('ENDED the log ended at ' .. m[4])
  end
  if fresh or seq > last + 1 then
    -- A new log, one whose books were lost, or events last+1 .. seq-1
    -- never came (dropped, or lost with Redis's data): the log starts at
    -- seq, without its head.
    redis.call('DEL', kev)
    fresh = true
    first, bytes = seq, 0
    last = seq - 1
  end
  local added = false
  for i = a + 5, a + 4 + 2 * n, 2 do
    if seq > last then
      -- The first event added to a log with books goes in only if the
      -- stream exists: books whose stream is gone (evicted, deleted)
      -- start afresh at this seq, without the events lost.
      if fresh or added or redis.call('XADD', kev, 'NOMKSTREAM', '0-' .. seq, 't', ARGV[i], 'd', ARGV[i + 1]) == false then
        if not fresh and not added then
          fresh = true
          first, bytes = seq, 0
        end
        redis.call('XADD', kev, '0-' .. seq, 't', ARGV[i], 'd', ARGV[i + 1])
      end
      bytes = bytes + #ARGV[i] + #ARGV[i + 1] + ovh
      last = seq
      added = true
    end
    seq = seq + 1
  end
  if not added then
    return last
  end
  if bytes > maxb and first < last then
    -- Drop the oldest events until the log fits, keeping the newest.
    local more = true
    while more and bytes > maxb and first < last do
      local es = redis.call('XRANGE', kev, '0-' .. first, '+', 'COUNT', 100)
      more = #es > 0
      for _, e in ipairs(es) do
        local s = tonumber(string.sub(e[1], 3))
        if bytes <= maxb or s >= last then
          more = false
          break
        end
        bytes = bytes - (#e[2][2] + #e[2][4] + ovh)
        first = s + 1
      end
    end
    redis.call('XTRIM', kev, 'MINID', '0-' .. first)
  end
  local fields = {'first', first, 'last', last, 'bytes', bytes, 'w', writer}
  if token ~= '' then
    table.insert(fields, 'tok')
    table.insert(fields, token)
    table.insert(fields, 'tokl')
    table.insert(fields, last)
  end
  -- The expiry is set again only when the run ends, or when the one set
  -- (at xp, for ttlOpen + refresh) is refresh old: the log lives ttlOpen
  -- to ttlOpen + refresh after its last append.
  local ttl = false
  if terminal then
    table.insert(fields, 'end')
    table.insert(fields, last)
    ttl = ttlEnd
  elseif fresh or not m[8] or math.abs(now - tonumber(m[8])) >= refresh then
    table.insert(fields, 'xp')
    table.insert(fields, now)
    ttl = ttlOpen + refresh
  end
  redis.call('HSET', kmeta, unpack(fields))
  if ttl then
    redis.call('PEXPIRE', kev, ttl)
    redis.call('PEXPIRE', kmeta, ttl)
  end
  local channel = notify .. string.sub(kev, klen + 2, -9)
  if terminal then
    redis.call('PUBLISH', channel, last .. ':end')
  else
    redis.call('PUBLISH', channel, last)
  end
  return last
end

local out = {}
local a = 10
for k = 1, #KEYS, 2 do
  local ok, res = pcall(one, k, a)
  if not ok then
    -- A command failed (out of memory, a key of the wrong type): this
    -- run's outcome only; those before it are written, those after go on.
    if type(res) == 'table' and res.err then
      res = redis.error_reply(res.err)
    else
      res = redis.error_reply(tostring(res))
    end
  end
  out[#out + 1] = res
  a = a + 5 + 2 * tonumber(ARGV[a + 4])
end
return out
`)

// readScript reads a run's log in one round trip: nil when the log does not
// exist, else {first, last, end (0 while open)} followed, when there are
// events after ARGV[1] to return, by up to ARGV[2] of them as XRANGE
// returns them.
var readScript = redis.NewScript(`
local m = redis.call('HMGET', KEYS[2], 'first', 'last', 'end')
if not m[2] then
  return false
end
local first, last = tonumber(m[1]), tonumber(m[2])
local e = tonumber(m[3]) or 0
local after = tonumber(ARGV[1])
if after + 1 < first or after >= last then
  return {first, last, e}
end
local es = redis.call('XRANGE', KEYS[1], '(0-' .. after, '+', 'COUNT', ARGV[2])
if #es == 0 or es[1][1] ~= '0-' .. (after + 1) then
  -- The stream lost events its books hold (evicted, deleted): none
  -- before its first entry, or none at all, is kept.
  first = last + 1
  if #es > 0 then
    first = tonumber(string.sub(es[1][1], 3))
  end
  return {first, last, e}
end
return {first, last, e, es}
`)
