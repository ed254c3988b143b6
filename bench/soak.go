package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// PlateauGrowth is the most the server's resident memory may grow over
// the last third of a soak's arrivals, in percent, for the soak to count
// as having reached a plateau. Memory that grows with every run served
// (a log of each finished run kept) grows by about half over the last
// third; a plateau's samples only wander by the collector's cycles.
const PlateauGrowth = 5.0

// Soak is what a soak measured: the server's resident memory over time
// while runs arrived at a constant rate.
type Soak struct {
	DurationS    float64 `json:"duration_s"`
	Rate         float64 `json:"rate_per_s"`
	SampleEveryS float64 `json:"sample_every_s"`
	// Launched is how many runs arrived; each is a new conversation.
	Launched int `json:"launched"`
	// Samples are the server's memory, every SampleEveryS from the first
	// arrival; the last is taken one period after the last run ended
	// (After).
	Samples []SoakSample `json:"samples"`
	// RSSMax is the highest sample.
	RSSMax int64 `json:"rss_max_bytes"`
	// LastThirdGrowth is how much the resident memory grew over the last
	// third of the arrivals (from the sample nearest its start to the last
	// one before the arrivals stopped), in percent; Plateau is whether
	// that is under PlateauGrowth. Both need at least three samples
	// during the arrivals (PlateauKnown).
	LastThirdGrowth float64 `json:"last_third_growth_percent"`
	PlateauKnown    bool    `json:"plateau_known"`
	Plateau         bool    `json:"plateau"`
}

// SoakSample is one memory sample of a soak.
type SoakSample struct {
	AtS float64 `json:"at_s"`
	// RSS is the server's resident set (VmRSS), 0 when its pid is not
	// known.
	RSS int64 `json:"rss_bytes"`
	// Open is the streams open then; Done the runs ended by then, Errors
	// those of them that failed.
	Open   int   `json:"open"`
	Done   int64 `json:"done"`
	Errors int64 `json:"errors"`
	// After marks the sample taken after the load.
	After bool `json:"after,omitempty"`
}

// arrive starts a new run every 1/Rate seconds from t0 for Soak, each a
// client of its own (a new conversation), until the soak or ctx ends.
func (l *load) arrive(ctx context.Context, wg *sync.WaitGroup, t0 time.Time) {
	every := time.Duration(float64(time.Second) / l.cfg.Rate)
	for i := int64(0); ; i++ {
		at := t0.Add(time.Duration(i) * every)
		if at.Sub(t0) >= l.cfg.Soak || !waitUntil(ctx, at) {
			return
		}
		l.launched.Add(1)
		wg.Go(func() { l.serverClient(ctx, 0, at) })
	}
}

// soakSample records one memory sample. It runs on the sampler's
// goroutine, or after it has stopped.
func (l *load) soakSample(serverPID int, at time.Duration, after bool) {
	s := SoakSample{AtS: at.Seconds(), Open: int(l.server.open.Load()), Done: l.server.done.Load(),
		Errors: l.server.failed.Load(), After: after}
	if serverPID > 0 {
		s.RSS, _ = readRSS(serverPID) // a failed read shows as 0
	}
	l.soak = append(l.soak, s)
}

// soakReport takes the sample after the load, one period after the last
// run ended (unless ctx ends first), and sums the samples up.
func (l *load) soakReport(ctx context.Context, serverPID int, t0 time.Time) *Soak {
	if waitUntil(ctx, time.Now().Add(l.cfg.SoakSampleEvery)) {
		l.soakSample(serverPID, time.Since(t0), true)
	}
	s := &Soak{DurationS: l.cfg.Soak.Seconds(), Rate: l.cfg.Rate, SampleEveryS: l.cfg.SoakSampleEvery.Seconds(),
		Launched: int(l.launched.Load()), Samples: l.soak}
	s.sum()
	return s
}

// sum fills in RSSMax and the plateau figures from the samples.
func (s *Soak) sum() {
	var during []SoakSample
	for _, x := range s.Samples {
		s.RSSMax = max(s.RSSMax, x.RSS)
		if !x.After && x.AtS <= s.DurationS && x.RSS > 0 {
			during = append(during, x)
		}
	}
	if len(during) < 3 {
		return
	}
	last := during[len(during)-1]
	from := last.AtS - (last.AtS-during[0].AtS)/3
	start := during[0]
	for _, x := range during {
		if x.AtS <= from {
			start = x
		}
	}
	s.LastThirdGrowth = 100 * float64(last.RSS-start.RSS) / float64(start.RSS)
	s.PlateauKnown = true
	s.Plateau = s.LastThirdGrowth < PlateauGrowth
}

// writeSoak writes the soak's table.
func writeSoak(b *strings.Builder, s *Soak) {
	fmt.Fprintf(b, "soak: %d runs arrived over %gs (%.4g/s), each a new conversation; server memory every %gs:\n",
		s.Launched, s.DurationS, s.Rate, s.SampleEveryS)
	const row = "%9s %12s %7s %10s %8s\n"
	fmt.Fprintf(b, row, "at (s)", "RSS", "open", "runs done", "errors")
	for _, x := range s.Samples {
		at := fmt.Sprintf("%.0f", x.AtS)
		if x.After {
			at = "after " + at
		}
		fmt.Fprintf(b, row, at, fmtBytes(float64(x.RSS)), fmt.Sprint(x.Open), fmt.Sprint(x.Done), fmt.Sprint(x.Errors))
	}
	switch {
	case !s.PlateauKnown:
		fmt.Fprintf(b, "plateau: unknown (fewer than 3 samples during the arrivals); RSS max %s\n", fmtBytes(float64(s.RSSMax)))
	case s.Plateau:
		fmt.Fprintf(b, "plateau: yes, RSS grew %.1f%% over the last third of the arrivals (under %g%%); RSS max %s\n",
			s.LastThirdGrowth, PlateauGrowth, fmtBytes(float64(s.RSSMax)))
	default:
		fmt.Fprintf(b, "plateau: no, RSS grew %.1f%% over the last third of the arrivals (%g%% or more); RSS max %s\n",
			s.LastThirdGrowth, PlateauGrowth, fmtBytes(float64(s.RSSMax)))
	}
	b.WriteString("\n")
}
