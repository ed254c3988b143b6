package server_test

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/agentstream/agentstream/config"
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
