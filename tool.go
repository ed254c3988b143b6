package agentstream

import (
	"context"
	"time"
)

// RunInfo is what a tool knows of the run that calls it: whose run it is
// and the context it was given (the seed's tools worked with the user's
// pregnancy week). The runner puts it in the context of every tool call.
type RunInfo struct {
	RunID    string
	ThreadID string
	UserID   string
	Agent    string
	// Context is the run's merged context; tools must not modify it.
	Context map[string]any
}

type runInfoKey struct{}

// WithRunInfo returns ctx carrying ri.
func WithRunInfo(ctx context.Context, ri RunInfo) context.Context {
	return context.WithValue(ctx, runInfoKey{}, ri)
}

// RunInfoFrom returns the RunInfo of the run a tool call belongs to; false
// outside a run.
func RunInfoFrom(ctx context.Context) (RunInfo, bool) {
	ri, ok := ctx.Value(runInfoKey{}).(RunInfo)
	return ri, ok
}

// TimedTool is a Tool whose calls have a timeout of their own, instead of
// the runner's tool timeout (0: the runner's).
type TimedTool interface {
	Tool
	Timeout() time.Duration
}

// ToolSource is a named set of tools that can change while the server
// runs: an MCP server's. Agents name it (mcp_servers: [name]) and get
// whatever tools it has when each of their runs starts.
type ToolSource interface {
	// Name is the name agents use for it.
	Name() string
	// Tools returns the tools it has now. A source that cannot be reached
	// keeps returning the tools it had, whose calls then fail with a tool
	// error until it is back.
	Tools(ctx context.Context) ([]Tool, error)
}
