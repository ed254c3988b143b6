package redislog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// go-redis logs through one process-wide logger that writes to stderr
// ("redis: 2026/… pool.go:770: redis: connection pool: failed to dial…"):
// an unreachable Redis printed several such lines before Open's own,
// clear error. Open routes them to its Options.Logger at debug level
// instead (the last Log opened wins); what matters reaches callers as
// errors.
var libLog struct {
	once   sync.Once
	logger atomic.Pointer[slog.Logger]
}

type libLogger struct{}

func (libLogger) Printf(ctx context.Context, format string, args ...any) {
	if l := libLog.logger.Load(); l != nil {
		l.DebugContext(ctx, "go-redis: "+strings.TrimPrefix(fmt.Sprintf(format, args...), "redis: "))
	}
}

// routeLibraryLogs sends go-redis's own log lines to l, at debug level.
func routeLibraryLogs(l *slog.Logger) {
	libLog.logger.Store(l)
	libLog.once.Do(func() { redis.SetLogger(libLogger{}) })
}
