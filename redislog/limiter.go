package redislog

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentstream/agentstream"
)

var _ agentstream.RateLimiter = (*RateLimiter)(nil)

// RateLimiter is an agentstream.RateLimiter kept in Redis, so that every
// instance sharing the Redis shares each key's rate: GCRA (a token bucket
// kept as one time, the key's "theoretical arrival time"), one key per
// limited key, under the Log's prefix, that expires once its bucket is
// full again.
type RateLimiter struct {
	client *redis.Client
	prefix string
	// interval is the time between actions at the steady rate, in µs.
	interval int64
	burst    int
}

// RateLimiter returns a limiter of perMinute (> 0) actions a minute per
// key, burst (> 0) at once, on the Log's Redis and prefix. A Redis that
// fails makes Allow fail: the caller decides whether to let the action
// through.
func (l *Log) RateLimiter(perMinute, burst int) *RateLimiter {
	perMinute, burst = max(perMinute, 1), max(burst, 1)
	return &RateLimiter{
		client:   l.client,
		prefix:   l.opts.Prefix + "rate:",
		interval: int64(time.Minute/time.Microsecond) / int64(perMinute),
		burst:    burst,
	}
}

// rateScript takes one action from a key's allowance, atomically, on
// Redis's clock (instances' clocks may differ). It returns 0 when the
// action is allowed, or the µs until one is (nothing taken).
//
// KEYS[1] is the key's time; ARGV[1] the interval (µs), ARGV[2] the burst.
var rateScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allowed_at = tat + interval - burst * interval
if allowed_at > now then
  return allowed_at - now
end
local next = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', math.ceil((next - now) / 1000) + 1000)
return 0
`)

// Allow implements agentstream.RateLimiter.
func (r *RateLimiter) Allow(ctx context.Context, key string) (bool, time.Duration, error) {
	wait, err := rateScript.Run(ctx, r.client, []string{r.prefix + key}, r.interval, r.burst).Int64()
	if err != nil {
		return false, 0, fmt.Errorf("redislog: rate limit: %w", err)
	}
	if wait > 0 {
		return false, time.Duration(wait) * time.Microsecond, nil
	}
	return true, 0, nil
}
