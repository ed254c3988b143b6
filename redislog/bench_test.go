package redislog

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/redis/go-redis/v9"
)

// BenchmarkAppendDeltas streams a run the way the runner does, one Append
// per token (b.N tokens, in bursts of `burst` tokens every `pace`, or as
// fast as possible), then the terminal event, while a reader on another
// Log follows it live. It reports the Redis commands the writer sends per
// token, the tokens appended per second, the reader's commands per token,
// and the latency from Append to the reader's Read returning the token
// (p50, p99): the price of the coalescing window.
func BenchmarkAppendDeltas(b *testing.B) {
	paces := []struct {
		pace  time.Duration
		burst int
	}{
		{0, 1},                      // as fast as possible
		{100 * time.Microsecond, 1}, // 10,000 tokens/s
		{time.Millisecond, 1},       // 1,000 tokens/s
		{10 * time.Millisecond, 1},  // 100 tokens/s, a fast model
		{10 * time.Millisecond, 4},  // 400 tokens/s, in chunks of 4
		{25 * time.Millisecond, 1},  // 40 tokens/s
	}
	for _, p := range paces {
		for _, coalesce := range []time.Duration{-1, time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond} {
			pace, window := "max", "off"
			if p.pace > 0 {
				pace = fmt.Sprintf("%vx%d", p.pace, p.burst)
			}
			if coalesce > 0 {
				window = coalesce.String()
			}
			b.Run("pace="+pace+"/coalesce="+window, func(b *testing.B) { benchDeltas(b, p.pace, p.burst, coalesce) })
		}
	}
}

func benchDeltas(b *testing.B, pace time.Duration, burst int, coalesce time.Duration) {
	prefix := testPrefix(b)
	w := openLog(b, "", Options{Prefix: prefix, Coalesce: coalesce})
	r := openLog(b, "", Options{Prefix: prefix})
	ctx := context.Background()
	id := runID()
	tok := agentstream.NewEvent(agentstream.EventMessageDelta,
		agentstream.MessageDeltaData{MessageID: "msg_01JD6Y3V8Q2Z5X7W9T4R6P8N0M", Delta: " token"})
	mustAppend(b, w, id, agentstream.NewEvent(agentstream.EventRunStarted, agentstream.RunStartedData{RunID: id}))

	// sent[seq] is when the token with that seq was appended.
	sent := make([]atomic.Int64, b.N+3)
	var lat []time.Duration
	readerDone := make(chan error, 1)
	go func() {
		var err error
		lat, err = readLatencies(ctx, r, id, sent)
		readerDone <- err
	}()
	// Let the reader subscribe.
	time.Sleep(20 * time.Millisecond)

	wcmds, rcmds := w.Commands(), r.Commands()
	b.ResetTimer()
	start := time.Now()
	next := start
	for i := range b.N {
		if pace > 0 && i%burst == 0 {
			next = next.Add(pace)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
		}
		sent[i+2].Store(time.Now().UnixNano())
		if _, err := w.Append(ctx, id, tok); err != nil {
			b.Fatal(err)
		}
	}
	mustAppend(b, w, id, done(id))
	elapsed := time.Since(start)
	b.StopTimer()
	if err := <-readerDone; err != nil {
		b.Fatal(err)
	}
	if len(lat) != b.N {
		b.Fatalf("the reader got %d tokens of %d", len(lat), b.N)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(w.Commands()-wcmds)/float64(b.N), "cmds/token")
	b.ReportMetric(float64(r.Commands()-rcmds)/float64(b.N), "reader-cmds/token")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tokens/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkAppendManyRuns streams `runs` runs at once, each one Append per
// token every `pace` (b.N tokens in all), the way an instance serving
// many clients does, while a reader on another Log follows each run. It
// reports the script calls the writer sends per token (client side), and,
// from INFO's deltas, the commands Redis ran per token (those the scripts
// call included) and the bytes it received per token: server-wide
// figures, exact only on a Redis of the benchmark's own
// (AGENTSTREAM_TEST_REDIS_URL pointing at one); and the latency from
// Append to the reader's Read returning the token (p50, p99).
func BenchmarkAppendManyRuns(b *testing.B) {
	for _, runs := range []int{10, 100} {
		b.Run(fmt.Sprintf("runs=%d/pace=20ms", runs), func(b *testing.B) { benchManyRuns(b, runs, 20*time.Millisecond) })
	}
}

func benchManyRuns(b *testing.B, runs int, pace time.Duration) {
	prefix := testPrefix(b)
	w := openLog(b, "", Options{Prefix: prefix})
	r := openLog(b, "", Options{Prefix: prefix})
	raw := rawClient(b)
	ctx := context.Background()
	per := max(1, b.N/runs)
	ids := make([]string, runs)
	for i := range ids {
		ids[i] = runID()
		mustAppend(b, w, ids[i], agentstream.NewEvent(agentstream.EventRunStarted, agentstream.RunStartedData{RunID: ids[i]}))
	}
	tok := agentstream.NewEvent(agentstream.EventMessageDelta,
		agentstream.MessageDeltaData{MessageID: "msg_01JD6Y3V8Q2Z5X7W9T4R6P8N0M", Delta: " token"})
	// sent[i][seq] is when run i's token seq was appended; lats[i] are the
	// reader's latencies of run i's tokens.
	sent := make([][]atomic.Int64, runs)
	lats := make([][]time.Duration, runs)
	readers := make(chan error, runs)
	for i, id := range ids {
		sent[i] = make([]atomic.Int64, per+3)
		go func() {
			var err error
			lats[i], err = readLatencies(ctx, r, id, sent[i])
			readers <- err
		}()
	}
	time.Sleep(50 * time.Millisecond) // the readers subscribe
	before := redisStats(b, raw)
	wcmds := w.Commands()
	b.ResetTimer()
	writers := make(chan error, runs)
	for i, id := range ids {
		go func() {
			next := time.Now().Add(time.Duration(i) * pace / time.Duration(runs))
			for k := range per {
				time.Sleep(time.Until(next))
				next = next.Add(pace)
				sent[i][k+2].Store(time.Now().UnixNano())
				if _, err := w.Append(ctx, id, tok); err != nil {
					writers <- err
					return
				}
			}
			_, err := w.Append(ctx, id, done(id))
			writers <- err
		}()
	}
	for range runs {
		if err := <-writers; err != nil {
			b.Fatal(err)
		}
	}
	for range runs {
		if err := <-readers; err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	after := redisStats(b, raw)
	var lat []time.Duration
	for _, l := range lats {
		lat = append(lat, l...)
	}
	if len(lat) != runs*per {
		b.Fatalf("the readers got %d tokens of %d", len(lat), runs*per)
	}
	slices.Sort(lat)
	tokens := float64(runs * per)
	b.ReportMetric(float64(w.Commands()-wcmds)/tokens, "calls/token")
	b.ReportMetric(float64(after.commands-before.commands)/tokens, "redis-cmds/token")
	b.ReportMetric(float64(after.input-before.input)/tokens, "redis-in-B/token")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// redisTotals are INFO's counters: commands run (cmdstat_*'s calls) and
// bytes received.
type redisTotals struct{ commands, input int64 }

func redisStats(b *testing.B, c *redis.Client) redisTotals {
	b.Helper()
	text, err := c.Info(context.Background(), "commandstats", "stats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var t redisTotals
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "total_net_input_bytes:"); ok {
			t.input, _ = strconv.ParseInt(rest, 10, 64)
		}
		if !strings.HasPrefix(line, "cmdstat_") {
			continue
		}
		_, stats, _ := strings.Cut(line, ":")
		calls, _, _ := strings.Cut(strings.TrimPrefix(stats, "calls="), ",")
		n, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			b.Fatalf("INFO commandstats: %q", line)
		}
		t.commands += n
	}
	return t
}

// readLatencies reads run id from its second event to its end, in order,
// and returns how long after sent[seq] (unix ns) each message.delta came.
func readLatencies(ctx context.Context, r *Log, id string, sent []atomic.Int64) ([]time.Duration, error) {
	var lat []time.Duration
	after := int64(1)
	for {
		evs, end, err := r.Read(ctx, id, after, 1000)
		now := time.Now().UnixNano()
		if err != nil {
			return lat, err
		}
		for _, ev := range evs {
			if ev.Seq != after+1 {
				return lat, fmt.Errorf("seq %d after %d", ev.Seq, after)
			}
			after = ev.Seq
			if ev.Type == agentstream.EventMessageDelta {
				lat = append(lat, time.Duration(now-sent[ev.Seq].Load()))
			}
		}
		if end {
			return lat, nil
		}
	}
}
