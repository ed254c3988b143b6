package server_test

import (
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/cpustat"
	"github.com/agentstream/agentstream/sim"
)

// BenchmarkStreams runs whole runs through a real server and its simulated
// model, over loopback HTTP: 64 clients at once, each starting runs of 100
// tokens on its own thread and reading them to the end, until b.N tokens
// have been streamed. ns/token is wall time per token for the whole
// machine (server, simulator and clients); profile it with -cpuprofile to
// see where the server's share goes.
func BenchmarkStreams(b *testing.B) {
	const clients, tokens = 64, 100
	e := start(b, sim.Options{Tokens: tokens, Record: -1}, func(c *config.Config) {
		c.Runs.MaxConcurrent = clients
	})
	threads := make([]string, clients)
	for i := range threads {
		threads[i] = e.newThread(`{}`).ID
	}
	runs := (b.N + tokens - 1) / tokens
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(runs) {
				resp, err := http.Post(e.url+"/v1/threads/"+threads[i]+"/runs", "application/json", strings.NewReader(`{"input":"hello"}`))
				if err != nil {
					b.Error(err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "event: run.completed") {
					b.Errorf("run: status %d, %v", resp.StatusCode, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(runs*tokens), "ns/token")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkRunRequests makes runs one after the other through a real
// server over loopback HTTP, as a native client does: POST /v1/threads,
// then POST /v1/threads/{id}/runs read to its end, each with an API key.
// The default agent (assistant, one tool), SQLite, the simulator over
// HTTP/2 without pacing and with 20 tokens. One op is one run with its
// thread; cpu-ns/run is the process's CPU time (getrusage) per run, the
// simulator's and the client's included (they are the same on both sides
// of a comparison), allocs/run its heap allocations (runtime.MemStats).
// Runs start on new goroutines, as in production: what they grow their
// stacks by is paid on every run.
func BenchmarkRunRequests(b *testing.B) {
	const key = "bench-run-requests-key"
	e := start(b, sim.Options{Tokens: 20, Record: -1}, func(c *config.Config) {
		c.DefaultAgent = "assistant"
		c.OpenAI.H2C = true
		c.Auth.Keys = []config.APIKey{{Key: key, User: "bench"}}
	})
	client := &http.Client{}
	post := func(path, body string) []byte {
		req, err := http.NewRequest(http.MethodPost, e.url+path, strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		out, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode/100 != 2 {
			b.Fatalf("POST %s: status %d, %v: %s", path, resp.StatusCode, err, out)
		}
		return out
	}
	oneRun := func() {
		th := post("/v1/threads", `{}`)
		i := strings.Index(string(th), `"id":"`)
		if i < 0 {
			b.Fatalf("no thread id in %s", th)
		}
		id, _, _ := strings.Cut(string(th[i+len(`"id":"`):]), `"`)
		if out := post("/v1/threads/"+id+"/runs", `{"input":"Hello! How are you today?"}`); !strings.Contains(string(out), "event: run.completed") {
			b.Fatalf("the run did not complete: %s", out)
		}
	}
	oneRun() // connections open, statements prepared
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu := cpustat.Of(b)
	b.ResetTimer()
	for b.Loop() {
		oneRun()
	}
	b.StopTimer()
	used := cpustat.Of(b) - cpu
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/run")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N), "allocs/run")
	b.ReportMetric(0, "ns/op")
}
