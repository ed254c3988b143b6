package server_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/agentstream/agentstream/sim"
)

// TestRedisPrefix: with event_log.redis_prefix the server's Redis event
// log writes a run's keys under that prefix, and none under the default
// one.
func TestRedisPrefix(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	prefix := testenv.RedisPrefixCleaned(t, url)
	e := start(t, sim.Options{Tokens: 3}, func(c *config.Config) {
		c.RedisURL = url
		c.EventLog.RedisPrefix = prefix
	})
	th := e.newThread(`{}`)
	resp, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi"}`)
	if n := checkNative(t, evs); n.end.Status != agentstream.RunCompleted {
		t.Fatalf("the run: %+v", n.end)
	}
	runID := resp.Header.Get("X-Run-Id")

	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	defer func() { _ = c.Close() }()
	ctx := context.Background()
	for _, tc := range []struct {
		key  string
		want int64
	}{
		{prefix + "{" + runID + "}:events", 1},
		{prefix + "{" + runID + "}:meta", 1},
		{"agentstream:{" + runID + "}:events", 0},
		{"agentstream:{" + runID + "}:meta", 0},
	} {
		n, err := c.Exists(ctx, tc.key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n != tc.want {
			t.Errorf("EXISTS %s = %d, want %d", tc.key, n, tc.want)
		}
	}
}
