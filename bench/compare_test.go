package bench

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
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
		ServerMinusDirect: Diff{TTFB: DistDiff{Valid: true, P50: 0.5}, TTFT: DistDiff{Valid: true, P50: 2.5}},
		ServerProcess:     &Process{CPUPerTokenUS: cpu, CPUPerRunMS: cpu / 10, MemoryPerStream: mem * 1024, OpenAtPeak: 10},
		Machine:           &Machine{BusyPercent: 50},
	}
	r.Server.MaxOpen, r.Server.Tokens, r.Server.Completed = 10, 100, 10
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
	c.Figures, c.Notes = figures(c.Agentstream, c.Baseline)
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
	if run := figs["server CPU per run"]; run.AgentstreamMedian != 4.5 || run.BaselineMedian != 2.5 || run.Ratio != 1.8 {
		t.Errorf("CPU per run %+v", run)
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
	// Whole rows: agentstream's column, then the relay's, then the ratio.
	rows := map[string][]string{}
	for _, line := range strings.Split(b.String(), "\n") {
		if name, rest, ok := strings.Cut(line, "  "); ok {
			for _, f := range strings.Split(rest, "  ") {
				if f = strings.TrimSpace(f); f != "" {
					rows[name] = append(rows[name], f)
				}
			}
		}
	}
	for name, want := range map[string][]string{
		"server CPU per token (µs)":                  {"40.0, 50.0, 45.0 → 45.0", "20.0, 30.0, 25.0 → 25.0", "1.80×"},
		"time to first byte p50, above direct (ms)":  {"0.50, 0.50, 0.50 → 0.50", "0.50, 0.50, 0.50 → 0.50"},
		"streams served at once":                     {"10, 10, 10 → 10", "10, 10, 10 → 10"},
		"time to first token p50, above direct (ms)": {"2.50, 2.50, 2.50 → 2.50", "2.50, 2.50, 2.50 → 2.50"},
	} {
		if got := rows[name]; !slices.Equal(got, want) {
			t.Errorf("row %q: %q, want %q; table:\n%s", name, got, want, b.String())
		}
	}
}

// Counts print whole, a median between two counts with its decimals;
// measures with two decimals below 10 and one above; one round has no
// median.
func TestComparisonCells(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		vs   []float64
		med  float64
		unit string
		want string
	}{
		{[]float64{0, 1}, 0.5, "", "0, 1 → 0.50"},
		{[]float64{1000, 999, 1000}, 1000, "", "1000, 999, 1000 → 1000"},
		{[]float64{55.94}, 55.94, "µs", "55.9"},
		{[]float64{-0.013, 0.25}, 0.1185, "ms", "-0.01, 0.25 → 0.12"},
		{[]float64{-12.5, 3}, -4.75, "ms", "-12.5, 3.00 → -4.75"},
	} {
		if got := cell(tc.vs, tc.med, tc.unit); got != tc.want {
			t.Errorf("cell(%v, %g, %q) = %q, want %q", tc.vs, tc.med, tc.unit, got, tc.want)
		}
	}
}

// No ratio against a baseline median that is not positive; the notes are
// printed.
func TestComparisonNoRatio(t *testing.T) {
	t.Parallel()
	c := Comparison{Rounds: 1, Agentstream: []Report{report(40, 100, true)}, Baseline: []Report{report(0, 45, true)}}
	c.Figures, c.Notes = figures(c.Agentstream, c.Baseline)
	c.Notes = append(c.Notes, "round 1, agentstream: something to say")
	for _, f := range c.Figures {
		if f.Name == "server CPU per token" && f.Ratio != 0 {
			t.Errorf("CPU ratio %g against a baseline of 0", f.Ratio)
		}
	}
	var b strings.Builder
	if err := c.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	cpuRow := ""
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(line, "server CPU per token") {
			cpuRow = line
		}
	}
	if !strings.Contains(b.String(), "note: round 1, agentstream: something to say") || cpuRow == "" || strings.Contains(cpuRow, "×") {
		t.Errorf("table:\n%s", b.String())
	}
}

// A measure some run lacks (no stamps: no token latency; no tokens: no
// CPU per token) is left out, with a note, rather than compared with
// zeros.
func TestComparisonMissing(t *testing.T) {
	t.Parallel()
	none := report(20, 45, true)
	none.Server.Tokens = 0
	c := Comparison{Rounds: 1, Agentstream: []Report{report(40, 100, false)}, Baseline: []Report{none}}
	c.Figures, c.Notes = figures(c.Agentstream, c.Baseline)
	for _, f := range c.Figures {
		if strings.Contains(f.Name, "latency per token") || f.Name == "server CPU per token" {
			t.Errorf("figure %q compared without its measure", f.Name)
		}
	}
	if len(c.Figures) != len(measures)-3 || len(c.Notes) != 3 || !strings.Contains(c.Notes[0], "not measured in every run") {
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
		{Config{Endpoint: EndpointSeed, Upstream: "h2c"}, 1, `upstream "h2c": want h2 or http1`},
		{Config{Stalled: 2}, 1, "compare runs the baseline relay too"},
	} {
		_, err := Compare(context.Background(), tc.cfg, tc.rounds, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compare(%+v, %d): %v; want %q", tc.cfg, tc.rounds, err, tc.want)
		}
	}
}

// A run that cannot start ends the comparison with its error.
func TestCompareRunFails(t *testing.T) {
	t.Parallel()
	cfg := Config{Streams: 2, Tokens: 2, Pace: 10 * time.Millisecond, ServerBin: "/nonexistent/agentstream"}
	c, err := Compare(context.Background(), cfg, 2, nil)
	if err == nil || !strings.Contains(err.Error(), "round 1, agentstream") || c.Rounds != 0 || len(c.Figures) != 0 {
		t.Errorf("err %v, %d rounds, %d figures", err, c.Rounds, len(c.Figures))
	}
}
