package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisUse is what the Redis the instances share did over the window,
// from INFO deltas: server-wide figures, exact only on a Redis nobody
// else uses meanwhile.
type RedisUse struct {
	// Commands is every command Redis ran, those that scripts call
	// included; Calls the same by command name.
	Commands int64            `json:"commands"`
	Calls    map[string]int64 `json:"calls"`
	// InputBytes and OutputBytes are what Redis received and sent
	// (total_net_input_bytes, total_net_output_bytes).
	InputBytes  int64 `json:"input_bytes"`
	OutputBytes int64 `json:"output_bytes"`
	// MemoryAfter less MemoryBefore is the memory (used_memory) the runs
	// left behind: their logs, kept until they expire.
	MemoryBefore int64 `json:"memory_before"`
	MemoryAfter  int64 `json:"memory_after"`
	// Runs is the server path's completed runs, the denominator of the
	// per-run figures.
	Runs              int     `json:"runs"`
	CommandsPerRun    float64 `json:"commands_per_run"`
	InputBytesPerRun  float64 `json:"input_bytes_per_run"`
	OutputBytesPerRun float64 `json:"output_bytes_per_run"`
	MemoryPerRun      float64 `json:"memory_per_run"`
}

// redisInfo is one INFO snapshot's figures.
type redisInfo struct {
	calls              map[string]int64
	input, output, mem int64
}

// redisMeter reads the shared Redis's INFO, and deletes the bench's keys.
type redisMeter struct {
	client *redis.Client
	prefix string
}

func newRedisMeter(redisURL, prefix string) (*redisMeter, error) {
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, fmt.Errorf("redis URL: %w", err)
	}
	return &redisMeter{client: redis.NewClient(opts), prefix: prefix}, nil
}

func (m *redisMeter) close() { _ = m.client.Close() }

// snapshot reads INFO commandstats, stats and memory.
func (m *redisMeter) snapshot(ctx context.Context) (redisInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	text, err := m.client.Info(ctx, "commandstats", "stats", "memory").Result()
	if err != nil {
		return redisInfo{}, fmt.Errorf("redis INFO: %w", err)
	}
	return parseRedisInfo(text)
}

// parseRedisInfo reads the figures RedisUse needs out of INFO's text:
// "cmdstat_NAME:calls=N,…" lines, total_net_input_bytes,
// total_net_output_bytes and used_memory.
func parseRedisInfo(text string) (redisInfo, error) {
	info := redisInfo{calls: map[string]int64{}}
	found := 0
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		key, val, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue
		}
		if name, ok := strings.CutPrefix(key, "cmdstat_"); ok {
			for field := range strings.SplitSeq(val, ",") {
				if n, ok := strings.CutPrefix(field, "calls="); ok {
					c, err := strconv.ParseInt(n, 10, 64)
					if err != nil {
						return redisInfo{}, fmt.Errorf("redis INFO %s: %w", key, err)
					}
					info.calls[name] = c
				}
			}
			continue
		}
		var dst *int64
		switch key {
		case "total_net_input_bytes":
			dst = &info.input
		case "total_net_output_bytes":
			dst = &info.output
		case "used_memory":
			dst = &info.mem
		default:
			continue
		}
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return redisInfo{}, fmt.Errorf("redis INFO %s: %w", key, err)
		}
		*dst = n
		found++
	}
	if found != 3 {
		return redisInfo{}, fmt.Errorf("redis INFO: %d of the 3 figures (net input, net output, used memory) found", found)
	}
	return info, nil
}

// redisUse is the use between two snapshots over runs runs. The INFO
// commands the bench sent itself are left out.
func redisUse(a, b redisInfo, runs int) *RedisUse {
	u := &RedisUse{Calls: map[string]int64{}, InputBytes: b.input - a.input, OutputBytes: b.output - a.output,
		MemoryBefore: a.mem, MemoryAfter: b.mem, Runs: runs}
	for name, n := range b.calls {
		if d := n - a.calls[name]; d > 0 && name != "info" {
			u.Calls[name] = d
			u.Commands += d
		}
	}
	if runs > 0 {
		r := float64(runs)
		u.CommandsPerRun, u.InputBytesPerRun, u.OutputBytesPerRun = float64(u.Commands)/r, float64(u.InputBytes)/r, float64(u.OutputBytes)/r
		u.MemoryPerRun = float64(b.mem-a.mem) / r
	}
	return u
}

// deleteKeys deletes the keys under the bench's prefix: the runs' logs.
func (m *redisMeter) deleteKeys(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	iter := m.client.Scan(ctx, 0, m.prefix+"*", 1000).Iterator()
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := m.client.Unlink(ctx, batch...).Err()
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 1000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	return flush()
}

// newRedisPrefix is a key prefix of the bench's own.
func newRedisPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail
	return "agentstream-bench-" + hex.EncodeToString(b[:]) + ":"
}

// loopbackHost checks that a database or Redis URL names a loopback host
// (or a Unix socket).
func loopbackHost(host string) error {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "" || host == "localhost" || strings.HasPrefix(host, "/") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q is not a loopback host: bench uses this machine only", host)
}
