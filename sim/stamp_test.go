package sim_test

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream/sim"
)

// stampRE is one stamped token: the prefix on the first only, the stamp,
// a space on every token but the last.
var stampRE = regexp.MustCompile(`^(\[simulated\])?t([0-9]{16}) ?$`)

// stamps checks the tokens of a stamped reply and returns their stamps.
func stamps(t *testing.T, toks []string) []int64 {
	t.Helper()
	var out []int64
	for i, tok := range toks {
		m := stampRE.FindStringSubmatch(tok)
		if m == nil {
			t.Fatalf("token %d %q is not a stamped token", i, tok)
		}
		if (m[1] != "") != (i == 0) {
			t.Errorf("token %d %q: want the prefix on the first token only", i, tok)
		}
		if strings.HasSuffix(tok, " ") != (i < len(toks)-1) {
			t.Errorf("token %d of %d %q: want a trailing space on all but the last", i, len(toks), tok)
		}
		us, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, us)
	}
	return out
}

func TestStampStream(t *testing.T) {
	const (
		tokens = 6
		pace   = 20 * time.Millisecond
	)
	r := start(t, sim.Options{Stamp: true, Tokens: tokens, Pace: pace, TTFT: -1})
	before := time.Now().UnixMicro()
	resp := post(t, within(t, 30*time.Second), r.URL(), chatRequest{Model: "m", Stream: true, Messages: []msg{user("hi")}}, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var received []int64 // when each content chunk was read
	s := readStream(t, resp.Body, func(s *stream) bool {
		for len(received) < len(s.contents) {
			received = append(received, time.Now().UnixMicro())
		}
		return false
	})
	if s.err != nil || !s.done || s.finish != "stop" {
		t.Fatalf("stream: err %v, done %v, finish %q", s.err, s.done, s.finish)
	}
	if len(s.contents) != tokens || !strings.HasPrefix(s.contentJoined, sim.Prefix) || len(sim.Split(s.contentJoined)) != tokens {
		t.Fatalf("%d tokens %q, want %d stamped tokens after %q", len(s.contents), s.contents, tokens, sim.Prefix)
	}
	st := stamps(t, s.contents)
	for i, us := range st {
		if us < before || us > received[i] {
			t.Errorf("token %d stamped %d, outside [request %d, receipt %d]", i, us, before, received[i])
		}
		// A timer never fires early: each stamp is at least a pace after
		// the one before (less a microsecond of truncation).
		if i > 0 && time.Duration(us-st[i-1])*time.Microsecond < pace-time.Microsecond {
			t.Errorf("tokens %d and %d stamped %dµs apart, want at least %s", i-1, i, us-st[i-1], pace)
		}
	}
}

func TestStampCompleteAndFault(t *testing.T) {
	r := start(t, fast(sim.Options{Stamp: true, Tokens: 4}))

	// A non-streamed reply: every token stamped when the body is written.
	before := time.Now().UnixMicro()
	resp := post(t, context.Background(), r.URL(), chatRequest{Model: "m", Messages: []msg{user("hi")}}, nil)
	var c struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage usage `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || len(c.Choices) != 1 {
		t.Fatalf("decoding the completion: %v, %+v", err, c)
	}
	st := stamps(t, sim.Split(c.Choices[0].Message.Content))
	if len(st) != 4 || st[0] != st[3] || st[0] < before || st[0] > time.Now().UnixMicro() || c.Usage.CompletionTokens != 4 {
		t.Errorf("completion %q, usage %+v", c.Choices[0].Message.Content, c.Usage)
	}

	// A cut stream sends stamped tokens up to the fault.
	resp = post(t, context.Background(), r.URL(), chatRequest{Model: "m", Stream: true, Messages: []msg{user("hi")}},
		map[string]string{sim.HeaderFault: "cut", sim.HeaderFaultAfter: "2"})
	s := readStream(t, resp.Body, nil)
	if s.err == nil || len(s.contents) != 2 {
		t.Fatalf("cut after 2: err %v, tokens %q", s.err, s.contents)
	}
	stamps(t, append(s.contents[:1:1], strings.TrimSuffix(s.contents[1], " ")))
}

// TestStampOnlyGeneratedText: scripted text and the answer to tool
// results are sent as they are; only the default generated text is
// stamped.
func TestStampOnlyGeneratedText(t *testing.T) {
	r := start(t, fast(sim.Options{Stamp: true, Decide: func(r *sim.Request) sim.Behavior {
		if r.LastMessage().Content == "script" {
			return sim.Behavior{Text: "scripted reply"}
		}
		return sim.Behavior{}
	}}))
	for _, tc := range []struct {
		msgs []msg
		want string
	}{
		{[]msg{user("script")}, "scripted reply"},
		{[]msg{user("q"), {Role: "assistant", ToolCalls: []toolCall{{ID: "c1", Type: "function", Function: function{Name: "f", Arguments: "{}"}}}},
			{Role: "tool", ToolCallID: "c1", Content: "42"}}, "[simulated] The tool f returned: 42."},
	} {
		resp := post(t, context.Background(), r.URL(), chatRequest{Model: "m", Stream: true, Messages: tc.msgs}, nil)
		if s := readStream(t, resp.Body, nil); s.err != nil || s.contentJoined != tc.want {
			t.Errorf("reply %q (%v), want %q", s.contentJoined, s.err, tc.want)
		}
	}
	resp := post(t, context.Background(), r.URL(), chatRequest{Model: "m", Stream: true, Messages: []msg{user("hello")}}, nil)
	s := readStream(t, resp.Body, nil)
	if st := stamps(t, s.contents); len(st) != sim.DefaultTokens {
		t.Errorf("%d stamped tokens, want %d", len(st), sim.DefaultTokens)
	}
}

func TestStampText(t *testing.T) {
	at := time.UnixMicro(1767225600123456)
	for _, n := range []int{-1, 0, 1, 2, 7} {
		text := sim.StampText(n, at)
		toks := sim.Split(text)
		if len(toks) != max(n, 1) || !strings.HasPrefix(text, sim.Prefix+"t1767225600123456") {
			t.Errorf("StampText(%d) = %q", n, text)
		}
		for _, us := range stamps(t, toks) {
			if us != at.UnixMicro() {
				t.Errorf("StampText(%d) = %q: stamp %d", n, text, us)
			}
		}
	}
}
