package bench

import (
	"context"
	"math"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestSoakSum: the plateau is judged on the last third of the samples
// taken during the arrivals, not on the one after them.
func TestSoakSum(t *testing.T) {
	t.Parallel()
	mib := int64(1 << 20)
	samples := func(rss ...int64) []SoakSample {
		var out []SoakSample
		for i, r := range rss {
			out = append(out, SoakSample{AtS: float64(10 * i), RSS: r * mib})
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		samples []SoakSample
		known   bool
		plateau bool
		growth  float64
		max     int64
	}{
		// Linear growth: 70 → 100 over the last third (30 of 90 s).
		{"growing", samples(10, 40, 50, 60, 70, 80, 90, 100, 110, 120), true, false, 100 * (120 - 90) / 90.0, 120},
		{"flat", samples(10, 60, 62, 61, 63, 62, 61, 62, 63, 62), true, true, 100 * (62 - 61) / 61.0, 63},
		{"two samples", samples(10, 20), false, false, 0, 20},
		{"no pid", samples(0, 0, 0, 0), false, false, 0, 0},
	} {
		s := &Soak{DurationS: 90, Samples: tc.samples}
		if len(tc.samples) > 2 {
			// The sample after the load does not count, however high.
			s.Samples = append(s.Samples, SoakSample{AtS: 100, RSS: 500 * mib, After: true})
			tc.max = max(tc.max, 500)
		}
		s.sum()
		if s.PlateauKnown != tc.known || s.Plateau != tc.plateau || math.Abs(s.LastThirdGrowth-tc.growth) > 1e-9 || s.RSSMax != tc.max*mib {
			t.Errorf("%s: known %v, plateau %v, growth %g%%, max %d; want %v, %v, %g%%, %d MiB",
				tc.name, s.PlateauKnown, s.Plateau, s.LastThirdGrowth, s.RSSMax, tc.known, tc.plateau, tc.growth, tc.max)
		}
	}
}

// TestBenchSoak runs a short soak against a fake server in this process:
// runs arrive at the rate asked, each on a new thread, and memory samples
// are taken on the period asked, with one after the load.
func TestBenchSoak(t *testing.T) {
	t.Parallel()
	srv := fakeServer(t, "ok")
	var progress strings.Builder
	rep, err := Run(context.Background(), Config{
		Soak: 1500 * time.Millisecond, Rate: 20, SoakSampleEvery: 300 * time.Millisecond, Duration: 30 * time.Second,
		URL: srv.URL, ServerPID: os.Getpid(), Tokens: 3,
	}, &progress)
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Soak
	if s == nil {
		t.Fatal("no soak in the report")
	}
	// 1.5 s at 20/s: arrivals at 0, 50, …, 1450 ms.
	if s.Launched != 30 || rep.Server.Runs != 30 || rep.Server.Completed != 30 || rep.Server.Clients != 30 ||
		rep.Server.CreateThread.N != 30 || rep.Direct.Runs != 0 || rep.Settings.SoakS != 1.5 || rep.Settings.Rate != 20 {
		t.Errorf("launched %d; server path %+v; direct %+v; settings %+v", s.Launched, rep.Server, rep.Direct, rep.Settings)
	}
	// Samples at 0 and about every 300 ms, then one after the load.
	if n := len(s.Samples); n < 5 || n > 8 || s.Samples[0].AtS != 0 || !s.Samples[n-1].After {
		t.Fatalf("samples %+v", s.Samples)
	}
	last := s.Samples[len(s.Samples)-1]
	if last.Done != 30 || last.Open != 0 || last.Errors != 0 {
		t.Errorf("after the load: %+v", last)
	}
	for i, x := range s.Samples {
		if i > 0 && (x.AtS < s.Samples[i-1].AtS || x.Done < s.Samples[i-1].Done) {
			t.Errorf("sample %d goes back: %+v after %+v", i, x, s.Samples[i-1])
		}
		if runtime.GOOS == "linux" && x.RSS <= 0 {
			t.Errorf("sample %d has no RSS: %+v", i, x)
		}
	}
	if runtime.GOOS == "linux" && (!s.PlateauKnown || s.RSSMax <= 0) {
		t.Errorf("soak %+v", s)
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"a soak of 1.5s, 20 new runs/s", "soak: 30 runs arrived over 1.5s (20/s)", "after ", "plateau: "} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestSoakConfig(t *testing.T) {
	t.Parallel()
	c := Config{Soak: time.Minute, RunsPerClient: 5}.WithDefaults()
	if c.Rate != DefaultRate || c.SoakSampleEvery != DefaultSoakEvery || c.Direct != 0 || c.RunsPerClient != 1 {
		t.Errorf("soak defaults %+v", c)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Rate: 5}, "a soak needs a positive duration"},
		{Config{Soak: -time.Second}, "a soak needs a positive duration"},
		{Config{Soak: time.Second, Rate: -1}, "a soak needs a positive duration"},
		{Config{Soak: time.Second, Stalled: 2}, "a soak runs without stalled clients"},
		{Config{Soak: time.Second, Baseline: true}, "a soak runs without stalled clients or the baseline relay"},
	} {
		if err := tc.cfg.WithDefaults().Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if n := (Config{Soak: time.Minute, Rate: 100, Tokens: 20, Pace: 50 * time.Millisecond}).WithDefaults().capacity(); n != 4*100*2+64 {
		t.Errorf("capacity of a soak of 100 runs/s of 2 s: %d", n)
	}
}
