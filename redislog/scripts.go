package redislog

import "github.com/redis/go-redis/v9"

// appendScript appends events to a run's log, atomically: sequence numbers
// stay gapless whoever calls it, and a retried call (its reply lost) adds
// nothing twice (events at seqs the log has, from the same writer, are
// skipped). It returns the run's last seq, or an error reply: ENDED (the log
// has ended) or CONFLICT (another writer's events hold those seqs).
//
// KEYS[1] is the run's stream, KEYS[2] its meta hash. ARGV: [1] max bytes,
// [2] ms to live while open, [3] ms to live once ended, [4] seq of the first
// event (0: right after the last one), [5] the channel to publish the new
// last seq on (followed by ":end" when the log ends), [6] the writer (the
// Log appending), [7] a token naming this call when [4] is 0 (empty
// otherwise), [8] the bytes an event counts besides its type and data,
// [9] "1" when the last event is terminal, [10] "1" when the first event
// must be the log's next (its seq [4] expected by the caller: CONFLICT
// otherwise, and no head-less start), then one type, data pair per event.
var appendScript = redis.NewScript(`
local m = redis.call('HMGET', KEYS[2], 'first', 'last', 'bytes', 'end', 'w', 'tok', 'tokl')
local exists = m[2] ~= false
local first, last, bytes = 1, 0, 0
if exists then
  first, last, bytes = tonumber(m[1]), tonumber(m[2]), tonumber(m[3])
end
local n = (#ARGV - 10) / 2
local seq = tonumber(ARGV[4])
local token = ARGV[7]
if ARGV[10] == '1' and seq ~= last + 1 then
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
elseif seq <= last and m[5] ~= ARGV[6] then
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
if not exists or seq > last + 1 then
  -- A new log, or events last+1 .. seq-1 never came (dropped, or lost
  -- with Redis's data): the log starts at seq, without its head.
  redis.call('DEL', KEYS[1])
  if seq > last + 1 then
    first, bytes = seq, 0
    last = seq - 1
  end
end
local ovh = tonumber(ARGV[8])
local added = false
for i = 11, #ARGV, 2 do
  if seq > last then
    redis.call('XADD', KEYS[1], '0-' .. seq, 't', ARGV[i], 'd', ARGV[i + 1])
    bytes = bytes + #ARGV[i] + #ARGV[i + 1] + ovh
    last = seq
    added = true
  end
  seq = seq + 1
end
if not added then
  return last
end
local maxb = tonumber(ARGV[1])
if bytes > maxb and first < last then
  -- Drop the oldest events until the log fits, keeping the newest.
  local more = true
  while more and bytes > maxb and first < last do
    local es = redis.call('XRANGE', KEYS[1], '0-' .. first, '+', 'COUNT', 100)
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
  redis.call('XTRIM', KEYS[1], 'MINID', '0-' .. first)
end
local fields = {'first', first, 'last', last, 'bytes', bytes, 'w', ARGV[6]}
if token ~= '' then
  table.insert(fields, 'tok')
  table.insert(fields, token)
  table.insert(fields, 'tokl')
  table.insert(fields, last)
end
local ttl = ARGV[2]
if ARGV[9] == '1' then
  table.insert(fields, 'end')
  table.insert(fields, last)
  ttl = ARGV[3]
end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
if ARGV[9] == '1' then
  redis.call('PUBLISH', ARGV[5], last .. ':end')
else
  redis.call('PUBLISH', ARGV[5], last)
end
return last
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
return {first, last, e, redis.call('XRANGE', KEYS[1], '(0-' .. after, '+', 'COUNT', ARGV[2])}
`)
