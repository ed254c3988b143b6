package bench

import (
	"strings"
	"testing"
)

const infoText = "# Commandstats\r\ncmdstat_evalsha:calls=204,usec=1000,usec_per_call=4.9,rejected_calls=0,failed_calls=0\r\n" +
	"cmdstat_xadd:calls=100,usec=10\r\ncmdstat_info:calls=7,usec=1\r\n\r\n# Stats\r\ntotal_net_input_bytes:5000\r\n" +
	"total_net_output_bytes:700\r\n# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n"

func TestParseRedisInfo(t *testing.T) {
	t.Parallel()
	a, err := parseRedisInfo(infoText)
	if err != nil {
		t.Fatal(err)
	}
	if a.calls["evalsha"] != 204 || a.calls["xadd"] != 100 || a.input != 5000 || a.output != 700 || a.mem != 1<<20 {
		t.Fatalf("%+v", a)
	}
	b := redisInfo{calls: map[string]int64{"evalsha": 604, "xadd": 300, "info": 9, "publish": 50}, input: 105000, output: 1700, mem: 1<<20 + 4000}
	u := redisUse(a, b, 2)
	if u.Commands != 650 || u.Calls["info"] != 0 || u.Calls["publish"] != 50 || u.CommandsPerRun != 325 ||
		u.InputBytesPerRun != 50000 || u.OutputBytesPerRun != 500 || u.MemoryPerRun != 2000 {
		t.Fatalf("%+v", u)
	}
	if got := fmtCalls(u.Calls, u.Runs); got != "evalsha 400 (200.0/run), xadd 200 (100.0/run), publish 50 (25.0/run)" {
		t.Errorf("fmtCalls: %s", got)
	}
	if z := redisUse(a, b, 0); z.CommandsPerRun != 0 || z.Commands != 650 {
		t.Errorf("no runs: %+v", z)
	}
}

func TestParseRedisInfoBad(t *testing.T) {
	t.Parallel()
	for _, text := range []string{
		"",
		"cmdstat_get:calls=x\r\ntotal_net_input_bytes:1\r\ntotal_net_output_bytes:1\r\nused_memory:1\r\n",
		"total_net_input_bytes:1\r\ntotal_net_output_bytes:1\r\n",
		"total_net_input_bytes:one\r\ntotal_net_output_bytes:1\r\nused_memory:1\r\n",
	} {
		if _, err := parseRedisInfo(text); err == nil {
			t.Errorf("%q: no error", text)
		}
	}
}

func TestLoopbackHost(t *testing.T) {
	t.Parallel()
	for host, ok := range map[string]bool{
		"127.0.0.1:5432": true, "localhost": true, "[::1]:6379": true, "": true, "/var/run/postgresql": true,
		"db.example.com:5432": false, "10.0.0.1": false,
	} {
		if err := loopbackHost(host); (err == nil) != ok {
			t.Errorf("%q: %v", host, err)
		}
	}
}

func TestConfigInstances(t *testing.T) {
	t.Parallel()
	good := Config{Instances: 3, DatabaseURL: "postgres://postgres@127.0.0.1:5432/x?sslmode=disable", RedisURL: "redis://127.0.0.1:6379/0"}.WithDefaults()
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	other := Config{RedisURL: "redis://127.0.0.1:6379/0"}.WithDefaults()
	if !strings.HasPrefix(good.RedisPrefix, "agentstream-bench-") || other.RedisPrefix == good.RedisPrefix {
		t.Errorf("prefixes %q, %q: want two of the bench's own", good.RedisPrefix, other.RedisPrefix)
	}
	if one := (Config{}).WithDefaults(); one.Instances != 1 || one.RedisPrefix != "" {
		t.Errorf("defaults %+v", one)
	}
	for _, c := range []Config{
		{Instances: 2, RedisURL: "redis://127.0.0.1:6379/0"},
		{Instances: 2, DatabaseURL: "postgres://127.0.0.1/x"},
		{Instances: 2, DatabaseURL: "postgres://127.0.0.1/x", RedisURL: "redis://127.0.0.1:6379/0", URL: "http://127.0.0.1:1"},
		{Instances: 2, DatabaseURL: "postgres://127.0.0.1/x", RedisURL: "redis://127.0.0.1:6379/0", Soak: 1e9},
		{DatabaseURL: "sqlite.db"},
		{RedisURL: "http://127.0.0.1:6379"},
		{RedisURL: "redis://127.0.0.1:6379", RedisPrefix: "{x}"},
	} {
		if err := c.WithDefaults().Validate(); err == nil {
			t.Errorf("%+v: valid", c)
		}
	}
}
