package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// Comparison is the outcome of Compare: every round's report of each
// server, in the order they ran, and the figures side by side.
type Comparison struct {
	// Rounds is how many rounds ran to the end, both servers; the figures
	// are theirs. An interrupted comparison has fewer than it asked for.
	Rounds int `json:"rounds"`
	// Endpoint and Upstream are those of every run of both servers.
	Endpoint string `json:"endpoint"`
	Upstream string `json:"upstream"`
	// Agentstream[i] ran just before Baseline[i]. After an interruption
	// Agentstream may hold one report more, of the round cut short.
	Agentstream []Report `json:"agentstream"`
	Baseline    []Report `json:"baseline"`
	// Figures are the measures the targets of BENCHMARKS.md are about.
	Figures []Figure `json:"figures"`
	// Notes are the rounds' own notes (prefixed with the round and the
	// server), and what Compare has to say of the whole.
	Notes []string `json:"notes,omitempty"`
}

// Figure is one measure in every round of both servers.
type Figure struct {
	Name string `json:"name"`
	Unit string `json:"unit"`
	// Agentstream and Baseline hold the measure of each round, in order.
	Agentstream []float64 `json:"agentstream"`
	Baseline    []float64 `json:"baseline"`
	// The medians of the rounds (with an even count, the mean of the two
	// middle ones).
	AgentstreamMedian float64 `json:"agentstream_median"`
	BaselineMedian    float64 `json:"baseline_median"`
	// Ratio is AgentstreamMedian ÷ BaselineMedian for the measures that
	// scale with the work (CPU, memory); absent (0) for the others, whose
	// ratio would mean nothing (a latency above the direct path can be
	// near zero or negative), and when the baseline's median is not
	// positive.
	Ratio float64 `json:"ratio,omitempty"`
}

// Compare runs the load of cfg against agentstream and against the bare
// relay (Config.Baseline), alternately, rounds times each, agentstream
// first, on the same endpoint and upstream. Machine speed drifts over
// minutes on a shared machine: runs made one after the other, in one
// command, are what can be compared. It needs what the relay needs: a
// server it starts itself (no Config.URL), no stalled clients.
//
// When ctx ends, Compare stops after the run under way and returns the
// rounds completed, with a note, and no error. A run that cannot start
// ends the comparison with an error, and the rounds completed before it.
func Compare(ctx context.Context, cfg Config, rounds int, progress io.Writer) (Comparison, error) {
	if rounds < 1 {
		return Comparison{}, errors.New("compare: at least one round")
	}
	if cfg.Baseline {
		return Comparison{}, errors.New("compare: the config must not ask for the baseline; Compare runs both")
	}
	base := cfg
	base.Baseline = true
	if err := base.WithDefaults().Validate(); err != nil {
		return Comparison{}, fmt.Errorf("compare runs the baseline relay too: %w", err)
	}
	if progress == nil {
		progress = io.Discard
	}
	d := base.WithDefaults()
	c := Comparison{Endpoint: d.Endpoint, Upstream: d.Upstream}
	var err error
rounds:
	for i := range rounds {
		for _, b := range []bool{false, true} {
			run := cfg
			run.Baseline = b
			name := "agentstream"
			if b {
				name = "the baseline relay"
			}
			_, _ = fmt.Fprintf(progress, "round %d of %d: %s\n", i+1, rounds, name)
			rep, runErr := Run(ctx, run, progress)
			if runErr != nil {
				err = fmt.Errorf("round %d, %s: %w", i+1, name, runErr)
				break rounds
			}
			if b {
				c.Baseline = append(c.Baseline, rep)
			} else {
				c.Agentstream = append(c.Agentstream, rep)
			}
			for _, n := range rep.Notes {
				c.Notes = append(c.Notes, fmt.Sprintf("round %d, %s: %s", i+1, name, n))
			}
			if rep.DurationCapReached {
				c.Notes = append(c.Notes, fmt.Sprintf("round %d, %s: cut by the duration cap", i+1, name))
			}
			if ctx.Err() != nil {
				c.Notes = append(c.Notes, fmt.Sprintf("interrupted in round %d of %d: the figures are of the %d round(s) completed", i+1, rounds, i))
				break rounds
			}
		}
		c.Rounds = i + 1
	}
	figs, notes := figures(c.Agentstream[:c.Rounds], c.Baseline[:c.Rounds])
	c.Figures, c.Notes = figs, append(c.Notes, notes...)
	return c, err
}

// measure reads one figure off a report; ok is false when the report
// does not have it.
type measure struct {
	name, unit string
	scales     bool
	get        func(r *Report) (float64, bool)
}

var measures = []measure{
	{"time to first byte p50, above direct", "ms", false, func(r *Report) (float64, bool) {
		d := r.ServerMinusDirect.TTFB
		return d.P50, d.Valid
	}},
	// The first token, not the first byte: a comment (native's ": ok"),
	// a header or a queued notice is not an answer.
	{"time to first token p50, above direct", "ms", false, func(r *Report) (float64, bool) {
		d := r.ServerMinusDirect.TTFT
		return d.P50, d.Valid
	}},
	{"added latency per token p50, above direct", "ms", false, func(r *Report) (float64, bool) {
		d := r.ServerMinusDirect.TokenLatency
		return d.P50, d.Valid
	}},
	{"added latency per token p99, above direct", "ms", false, func(r *Report) (float64, bool) {
		d := r.ServerMinusDirect.TokenLatency
		return d.P99, d.Valid
	}},
	{"server CPU per token", "µs", true, func(r *Report) (float64, bool) {
		if r.ServerProcess == nil || r.Server.Tokens == 0 {
			return 0, false
		}
		return r.ServerProcess.CPUPerTokenUS, true
	}},
	// What a run costs beyond its tokens shows with short replies
	// (--tokens 20, --runs-per-client): issue 15's target 6.
	{"server CPU per run", "ms", true, func(r *Report) (float64, bool) {
		if r.ServerProcess == nil || r.Server.Completed == 0 {
			return 0, false
		}
		return r.ServerProcess.CPUPerRunMS, true
	}},
	{"server memory per open stream", "KiB", true, func(r *Report) (float64, bool) {
		if r.ServerProcess == nil || r.ServerProcess.OpenAtPeak == 0 {
			return 0, false
		}
		return r.ServerProcess.MemoryPerStream / 1024, true
	}},
	{"streams served at once", "", false, func(r *Report) (float64, bool) { return float64(r.Server.MaxOpen), true }},
	{"errors", "", false, func(r *Report) (float64, bool) { return float64(r.Server.ErrorCount), true }},
	{"machine busy", "%", false, func(r *Report) (float64, bool) {
		if r.Machine == nil {
			return 0, false
		}
		return r.Machine.BusyPercent, true
	}},
}

// figures compares the reports of complete rounds, measure by measure;
// a measure some report lacks is left out, with a note.
func figures(agentstream, baseline []Report) ([]Figure, []string) {
	if len(agentstream) == 0 || len(baseline) == 0 {
		return nil, nil
	}
	var figs []Figure
	var notes []string
	for _, m := range measures {
		f := Figure{Name: m.name, Unit: m.unit}
		ok := true
		for _, reps := range []struct {
			in  []Report
			out *[]float64
		}{{agentstream, &f.Agentstream}, {baseline, &f.Baseline}} {
			for i := range reps.in {
				v, has := m.get(&reps.in[i])
				ok = ok && has
				*reps.out = append(*reps.out, v)
			}
		}
		if !ok {
			notes = append(notes, fmt.Sprintf("%s: not measured in every run", m.name))
			continue
		}
		f.AgentstreamMedian, f.BaselineMedian = median(f.Agentstream), median(f.Baseline)
		if m.scales && f.BaselineMedian > 0 {
			f.Ratio = f.AgentstreamMedian / f.BaselineMedian
		}
		figs = append(figs, f)
	}
	return figs, notes
}

// median of vs (not empty); with an even count, the mean of the middle two.
func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// WriteTable writes the comparison: the settings, then each figure's
// value in every round and its median, for both servers.
func (c *Comparison) WriteTable(w io.Writer) error {
	var b strings.Builder
	if len(c.Agentstream) > 0 {
		s := c.Agentstream[0].Settings
		fmt.Fprintf(&b, "agentstream bench --compare: %d streams × %d run(s) on %s, upstream %s, %d tokens every %s, ramp %s; %d round(s), each agentstream then the baseline relay\n\n",
			s.Streams, s.RunsPerClient, s.Endpoint, s.Upstream, s.Tokens, fmtMS(s.PaceMS), fmtMS(s.RampMS), c.Rounds)
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "figure\tagentstream (rounds → median)\tbaseline relay (rounds → median)\tratio")
	for _, f := range c.Figures {
		ratio := ""
		if f.Ratio != 0 {
			ratio = fmt.Sprintf("%.2f×", f.Ratio)
		}
		name := f.Name
		if f.Unit != "" {
			name += " (" + f.Unit + ")"
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, cell(f.Agentstream, f.AgentstreamMedian, f.Unit), cell(f.Baseline, f.BaselineMedian, f.Unit), ratio)
	}
	_ = tw.Flush() // into a strings.Builder: cannot fail
	for _, n := range c.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cell is one figure's rounds and, when there are several, their median.
func cell(vs []float64, med float64, unit string) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = num(v, unit)
	}
	if len(vs) == 1 {
		return parts[0]
	}
	return strings.Join(parts, ", ") + " → " + num(med, unit)
}

// num prints a figure: a count (no unit) whole unless it is a median
// between two counts, a measure with two decimals below 10 and one above.
func num(v float64, unit string) string {
	switch {
	case unit == "" && v == float64(int64(v)):
		return fmt.Sprintf("%d", int64(v))
	case v > -10 && v < 10:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
