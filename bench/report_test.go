package bench

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestBenchPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100) // 1ms … 100ms
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one p50", ms(7), 50, 7 * time.Millisecond},
		{"one max", ms(7), 100, 7 * time.Millisecond},
		{"two p50 is the lower", ms(1, 2), 50, time.Millisecond},
		{"two p51 is the upper", ms(1, 2), 51, 2 * time.Millisecond},
		{"four p50", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"four p75", ms(1, 2, 3, 4), 75, 3 * time.Millisecond},
		{"four p99", ms(1, 2, 3, 4), 99, 4 * time.Millisecond},
		{"hundred p1", hundred, 1, time.Millisecond},
		{"hundred p50", hundred, 50, 50 * time.Millisecond},
		{"hundred p90", hundred, 90, 90 * time.Millisecond},
		{"hundred p99", hundred, 99, 99 * time.Millisecond},
		{"hundred p99.5", hundred, 99.5, 100 * time.Millisecond},
		{"hundred max", hundred, 100, 100 * time.Millisecond},
		{"p0 is the min", ms(3, 4), 0, 3 * time.Millisecond},
		{"ties", ms(5, 5, 5, 9), 75, 5 * time.Millisecond},
	} {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("%s: percentile(%v, %g) = %v, want %v", tc.name, tc.sorted, tc.p, got, tc.want)
		}
	}
}

func TestBenchNewDist(t *testing.T) {
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		want    Dist
	}{
		{"none", nil, Dist{}},
		{"one", []time.Duration{1500 * time.Microsecond}, Dist{N: 1, P50: 1.5, P90: 1.5, P99: 1.5, Max: 1.5}},
		{"unsorted", []time.Duration{4 * time.Millisecond, time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond},
			Dist{N: 4, P50: 2, P90: 4, P99: 4, Max: 4}},
		{"negative (a clock step)", []time.Duration{-time.Millisecond, time.Millisecond}, Dist{N: 2, P50: -1, P90: 1, P99: 1, Max: 1}},
	} {
		if got := newDist(tc.samples); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	// Random samples: ordered, and each percentile is a sample.
	r := rand.New(rand.NewPCG(1, 2))
	for range 100 {
		n := 1 + r.IntN(2000)
		s := make([]time.Duration, n)
		for i := range s {
			s[i] = time.Duration(r.Int64N(int64(time.Second)))
		}
		d := newDist(slices.Clone(s))
		if d.N != n || !(d.P50 <= d.P90 && d.P90 <= d.P99 && d.P99 <= d.Max) || d.Max != ms(slices.Max(s)) {
			t.Fatalf("%d samples: %+v", n, d)
		}
	}
}

func TestBenchDiffAndPerStream(t *testing.T) {
	a := Dist{N: 3, P50: 5, P90: 6, P99: 7, Max: 9}
	b := Dist{N: 1, P50: 1, P90: 1, P99: 2, Max: 3}
	if got, want := diff(a, b), (DistDiff{Valid: true, P50: 4, P90: 5, P99: 5, Max: 6}); got != want {
		t.Errorf("diff = %+v, want %+v", got, want)
	}
	if got := diff(a, Dist{}); got.Valid {
		t.Errorf("diff with an empty side = %+v, want invalid", got)
	}
	for _, tc := range []struct {
		before, atPeak int64
		open           int
		want           float64
	}{
		{10 << 20, 20 << 20, 1024, 10 << 10},
		{10 << 20, 10 << 20, 5, 0},
		{10 << 20, 9 << 20, 1, -(1 << 20)}, // the GC returned memory: reported as is
		{10 << 20, 20 << 20, 0, 0},
	} {
		if got := perStream(tc.before, tc.atPeak, tc.open); got != tc.want {
			t.Errorf("perStream(%d, %d, %d) = %g, want %g", tc.before, tc.atPeak, tc.open, got, tc.want)
		}
	}
	if got := perToken(2*time.Second, 1000); got != 2000 {
		t.Errorf("perToken = %g, want 2000µs", got)
	}
	if got := perToken(time.Second, 0); got != 0 {
		t.Errorf("perToken without tokens = %g", got)
	}
}

func TestBenchPathStats(t *testing.T) {
	p := newPathStats(3)
	var s samples
	s.ttfb = append(s.ttfb, time.Millisecond)
	s.lat = append(s.lat, 2*time.Millisecond, 4*time.Millisecond)
	p.add("", &s)
	if len(s.ttfb) != 0 || len(s.lat) != 0 {
		t.Fatal("add did not reset the client's samples")
	}
	s.ttfb = append(s.ttfb, 3*time.Millisecond)
	p.add("broken_stream", &s)
	p.add("broken_stream", &s)
	p.tokens.Add(50)
	p.opened()
	p.opened()
	p.open.Add(-1)
	p.opened()
	r := p.report(2 * time.Second)
	if r.Clients != 3 || r.Runs != 3 || r.Completed != 1 || r.ErrorCount != 2 || r.Errors["broken_stream"] != 2 ||
		r.MaxOpen != 2 || r.Tokens != 50 || r.TokensPerS != 25 || r.TTFB.N != 2 || r.TTFB.Max != 3 || r.TokenLatency.P50 != 2 {
		t.Errorf("report %+v", r)
	}
}

func TestBenchWriteTable(t *testing.T) {
	status := 0
	rep := Report{
		Settings: Settings{Streams: 2, RunsPerClient: 1, Endpoint: "native", Tokens: 3, PaceMS: 50, RampMS: 1000, Direct: 1, Stalled: 1},
		WindowS:  1.5, Stamps: true,
		Server: Path{Clients: 2, Runs: 2, Completed: 1, ErrorCount: 1, Errors: map[string]int{"http_429": 1},
			TTFB: Dist{N: 2, P50: 1, P90: 2, P99: 2, Max: 2}, TokenLatency: Dist{N: 3, P50: 0.5, P90: 1, P99: 1, Max: 1}},
		Direct:            Path{Clients: 1, Runs: 1, Completed: 1, TTFB: Dist{N: 1, P50: 0.25, P90: 0.25, P99: 0.25, Max: 0.25}},
		ServerMinusDirect: Diff{TTFB: DistDiff{Valid: true, P50: 0.75, P90: 1.75, P99: 1.75, Max: 1.75}},
		Stalled:           &Stalled{Clients: 1, Opened: 1},
		ServerProcess:     &Process{PID: 42, CPUS: 0.5, CPUPercent: 33, CPUPerTokenUS: 166.7, CPUPerRunMS: 500, RSSBefore: 10 << 20, RSSAtPeakOpen: 11 << 20, OpenAtPeak: 3, MemoryPerStream: 1 << 20 / 3, ExitStatus: &status},
	}
	var b strings.Builder
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"2 streams × 1 run(s) on native, 3 tokens every 50ms (20 tokens/s), TTFT none, ramp 1s",
		"time to first byte       server              1.00      2.00      2.00      2.00         2",
		"server−direct       0.75      1.75      1.75      1.75",
		"time to first token      server                 -         -         -         -         0",
		"runs completed                      1/2            1/1",
		"server errors: http_429 1",
		"stalled clients: 1 opened of 1",
		"server process (pid 42): CPU 0.50s over the window (user 0.00s",
		"166.7 µs/token, 500.00 ms/run",
		"341.3 KiB per open stream",
		"exit status after SIGTERM: 0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
}

func TestBenchProcParsing(t *testing.T) {
	stat := []byte("1234 (agent (stream) x) S 1 1234 1234 0 -1 4194560 5000 0 0 0 250 75 0 0 20 0 12 0 100 0 0\n")
	if got, err := parseStatCPU(stat, 100); err != nil || got != (cpuUse{2500 * time.Millisecond, 750 * time.Millisecond}) || got.total() != 3250*time.Millisecond {
		t.Errorf("parseStatCPU = %+v, %v; want 2.5s user, 0.75s system", got, err)
	}
	if got, err := parseStatCPU(stat, 1000); err != nil || got.total() != 325*time.Millisecond {
		t.Errorf("parseStatCPU at 1000Hz = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 ten 12"} {
		if _, err := parseStatCPU([]byte(bad), 100); err == nil {
			t.Errorf("parseStatCPU(%q): no error", bad)
		}
	}
	status := []byte("Name:\tagentstream\nVmPeak:\t  900 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n")
	if got, err := parseStatusRSS(status); err != nil || got != 20<<20 {
		t.Errorf("parseStatusRSS = %d, %v", got, err)
	}
	if _, err := parseStatusRSS([]byte("Name:\tx\n")); err == nil {
		t.Error("parseStatusRSS without VmRSS: no error")
	}
	auxv := make([]byte, 0, 64)
	for _, kv := range [][2]uint64{{6, 4096}, {17, 250}, {0, 0}} {
		auxv = binary.NativeEndian.AppendUint64(auxv, kv[0])
		auxv = binary.NativeEndian.AppendUint64(auxv, kv[1])
	}
	if got := auxClockTicks(auxv); got != 250 {
		t.Errorf("auxClockTicks = %d, want 250", got)
	}
	if got := auxClockTicks(auxv[:16]); got != 0 {
		t.Errorf("auxClockTicks without AT_CLKTCK = %d", got)
	}
	a, err := parseMachineCPU([]byte("cpu  100 5 50 800 40 1 2 0 7 0\ncpu0 50 2 25 400 20 0 1 0 0 0\n"))
	if err != nil || a != (cpuTimes{total: 998, idle: 840}) {
		t.Errorf("parseMachineCPU = %+v, %v", a, err)
	}
	if _, err := parseMachineCPU([]byte("intr 1 2\n")); err == nil {
		t.Error("parseMachineCPU without a cpu line: no error")
	}
	if got := busyPercent(cpuTimes{1000, 800}, cpuTimes{1200, 850}); got != 75 {
		t.Errorf("busyPercent = %g, want 75", got)
	}
	if got := busyPercent(cpuTimes{1000, 800}, cpuTimes{1000, 800}); got != 0 {
		t.Errorf("busyPercent of nothing = %g", got)
	}
	// This process: some CPU used, some memory resident.
	if cpu, err := readCPU(0); err == nil && (cpu.user < 0 || cpu.system < 0) {
		t.Errorf("readCPU(self) = %v", cpu)
	}
	if rss, err := readRSS(0); err == nil && rss <= 0 {
		t.Errorf("readRSS(self) = %d", rss)
	}
}
