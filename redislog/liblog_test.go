package redislog

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/testenv"
)

// lockedBuffer is written by one goroutine while the test reads it.
type lockedBuffer = testenv.Buffer

// TestOpenRoutesLibraryLogs: go-redis's own log lines (which it would
// print to stderr) go to the Log's logger at debug level, and Open's error
// is what tells the caller Redis is unreachable.
func TestOpenRoutesLibraryLogs(t *testing.T) {
	// Not parallel: go-redis's logger is process-wide, and the last Log
	// opened gets its lines.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // a closed loopback port: connections are refused

	var info, debug lockedBuffer
	for _, tt := range []struct {
		level slog.Level
		out   *lockedBuffer
	}{{slog.LevelInfo, &info}, {slog.LevelDebug, &debug}} {
		logger := slog.New(slog.NewTextHandler(tt.out, &slog.HandlerOptions{Level: tt.level}))
		_, err = Open(context.Background(), "redis://"+addr+"/0", Options{Logger: logger})
		if !errors.Is(err, agentstream.ErrUnavailable) || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("Open: %v, want ErrUnavailable saying Redis is unreachable", err)
		}
	}
	if info.String() != "" {
		t.Fatalf("at info level the library's lines must not show: %q", info.String())
	}
	if got := debug.String(); !strings.Contains(got, "level=DEBUG") || !strings.Contains(got, "go-redis: connection pool: failed to dial") {
		t.Fatalf("at debug level, want the library's dial failures: %q", got)
	}
}
