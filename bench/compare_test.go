package bench

import (
	"context"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{-1, 2}, 0.5},
	} {
		in := append([]float64(nil), tc.in...)
		if got := median(in); got != tc.want {
			t.Errorf("median(%v) = %g, want %g", tc.in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Errorf("median reordered its input: %v", in)
			}
		}
	}
}

// report returns a report whose server used cpu µs per token and mem KiB
// per stream, with token latencies when stamped.
func report(cpu, mem float64, stamped bool) Report {
	r := Report{
		ServerMinusDirect: Diff{TTFB: DistDiff{Valid: true, P50: 0.5}},
		ServerProcess:     &Process{CPUPerTokenUS: cpu, MemoryPerStream: mem * 1024, OpenAtPeak: 10},
		Machine:           &Machine{BusyPercent: 50},
	}
	r.Server.MaxOpen = 10
	if stamped {
		r.ServerMinusDirect.TokenLatency = DistDiff{Valid: true, P50: 1, P99: 4}
	}
	return r
}

func TestComparisonFigures(t *testing.T) {
	t.Parallel()
	c := Comparison{
		Rounds:      3,
		Agentstream: []Report{report(40, 100, true), report(50, 110, true), report(45, 90, true)},
		Baseline:    []Report{report(20, 45, true), report(30, 44, true), report(25, 46, true)},
	}
	c.figures()
	figs := map[string]Figure{}
	for _, f := range c.Figures {
		figs[f.Name] = f
	}
	if len(c.Figures) != len(measures) || len(c.Notes) != 0 {
		t.Fatalf("%d figures, notes %q", len(c.Figures), c.Notes)
	}
	cpu := figs["server CPU per token"]
	if cpu.AgentstreamMedian != 45 || cpu.BaselineMedian != 25 || cpu.Ratio != 1.8 || cpu.Agentstream[1] != 50 || cpu.Baseline[2] != 25 {
		t.Errorf("CPU %+v", cpu)
	}
	if mem := figs["server memory per open stream"]; mem.AgentstreamMedian != 100 || mem.BaselineMedian != 45 || mem.Ratio == 0 {
		t.Errorf("memory %+v", mem)
	}
	// Latencies above the direct path are compared, not divided.
	if p99 := figs["added latency per token p99, above direct"]; p99.AgentstreamMedian != 4 || p99.Ratio != 0 {
		t.Errorf("p99 %+v", p99)
	}

	var b strings.Builder
	if err := c.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"server CPU per token (µs)", "40.0, 50.0, 45.0 → 45.0", "0.50, 0.50, 0.50 → 0.50", "1.80×", "streams served at once", "10, 10, 10 → 10"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, b.String())
		}
	}
}

// A measure some run lacks (no stamps: no token latency) is left out,
// with a note, rather than compared with zeros.
func TestComparisonMissing(t *testing.T) {
	t.Parallel()
	c := Comparison{Rounds: 1, Agentstream: []Report{report(40, 100, false)}, Baseline: []Report{report(20, 45, true)}}
	c.figures()
	for _, f := range c.Figures {
		if strings.Contains(f.Name, "latency per token") {
			t.Errorf("figure %q compared without stamps", f.Name)
		}
	}
	if len(c.Figures) != len(measures)-2 || len(c.Notes) != 2 || !strings.Contains(c.Notes[0], "not measured in every run") {
		t.Errorf("%d figures, notes %q", len(c.Figures), c.Notes)
	}
}

func TestCompareRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg    Config
		rounds int
		want   string
	}{
		{Config{}, 0, "at least one round"},
		{Config{Baseline: true}, 1, "must not ask for the baseline"},
		{Config{Endpoint: EndpointSeed}, 1, "the baseline relay is started by the bench"},
		{Config{Stalled: 2}, 1, "the baseline relay is started by the bench"},
	} {
		_, err := Compare(context.Background(), tc.cfg, tc.rounds, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compare(%+v, %d): %v; want %q", tc.cfg, tc.rounds, err, tc.want)
		}
	}
}
