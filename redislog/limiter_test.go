package redislog

import (
	"testing"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/limitertest"
)

func TestRateLimiter(t *testing.T) {
	t.Parallel()
	limitertest.Run(t, func(t testing.TB, perMinute, burst int) agentstream.RateLimiter {
		return openLog(t, "", Options{}).RateLimiter(perMinute, burst)
	})
}

// TestRateLimiterShared: two Logs on one Redis and prefix (two instances)
// share each key's rate; another prefix is another deployment's. Keys
// expire once their bucket is full again.
func TestRateLimiterShared(t *testing.T) {
	t.Parallel()
	prefix := testPrefix(t)
	a := openLog(t, "", Options{Prefix: prefix}).RateLimiter(1, 2)
	b := openLog(t, "", Options{Prefix: prefix}).RateLimiter(1, 2)
	other := openLog(t, "", Options{}).RateLimiter(1, 2)
	for i, l := range []*RateLimiter{a, b} {
		if ok, _, err := l.Allow(t.Context(), "user-1"); !ok || err != nil {
			t.Fatalf("action %d: %v, %v", i+1, ok, err)
		}
	}
	for _, l := range []*RateLimiter{a, b} {
		if ok, wait, err := l.Allow(t.Context(), "user-1"); ok || err != nil || wait <= 0 {
			t.Fatalf("a third action over two instances: %v, %v, %v; want refused", ok, wait, err)
		}
	}
	if ok, _, err := other.Allow(t.Context(), "user-1"); !ok || err != nil {
		t.Fatalf("another prefix's action: %v, %v", ok, err)
	}
	ttl, err := rawClient(t).PTTL(t.Context(), prefix+"rate:user-1").Result()
	if err != nil || ttl <= 0 || ttl > 2*60*1000*1e6+1e9 {
		t.Fatalf("the key's TTL is %v (%v); want one, about the bucket's refill time", ttl, err)
	}
}

// TestRateLimiterDown: a Redis that cannot be reached is an error (the
// caller fails open), not a refusal.
func TestRateLimiterDown(t *testing.T) {
	t.Parallel()
	p, url := newProxy(t)
	l := openLog(t, url, Options{}).RateLimiter(60, 1)
	if ok, _, err := l.Allow(t.Context(), "user-1"); !ok || err != nil {
		t.Fatalf("Allow: %v, %v", ok, err)
	}
	p.setDown(true)
	ok, wait, err := l.Allow(t.Context(), "user-1")
	if err == nil || ok || wait != 0 {
		t.Fatalf("Allow with Redis down: %v, %v, %v; want an error", ok, wait, err)
	}
}
