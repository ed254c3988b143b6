package config

import (
	"strings"
	"testing"
	"time"
)

// TestBodyTimeoutAndDisconnectGrace: http.body_timeout and
// runs.disconnect_grace decode, default, and validate.
func TestBodyTimeoutAndDisconnectGrace(t *testing.T) {
	t.Parallel()
	d := Config{}.WithDefaults()
	if d.HTTP.BodyTimeout != 30*time.Second || d.Runs.DisconnectGrace != 5*time.Second {
		t.Fatalf("defaults: body_timeout %s, disconnect_grace %s", d.HTTP.BodyTimeout, d.Runs.DisconnectGrace)
	}
	c, err := Decode([]byte("http:\n  body_timeout: 2s\nruns:\n  disconnect_grace: -1s\n"))
	if err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	if c.HTTP.BodyTimeout != 2*time.Second || c.Runs.DisconnectGrace != -time.Second {
		t.Fatalf("decoded: body_timeout %s, disconnect_grace %s", c.HTTP.BodyTimeout, c.Runs.DisconnectGrace)
	}
	// A negative grace means cancel at once; a negative body timeout is
	// meaningless.
	if err := c.Validate(); err != nil {
		t.Fatalf("a negative disconnect_grace: %v", err)
	}
	c.HTTP.BodyTimeout = -time.Second
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "http.body_timeout") {
		t.Fatalf("a negative body_timeout: %v", err)
	}
}
