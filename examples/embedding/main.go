// Command embedding runs agentstream inside a Go program that brings a tool
// of its own: order_status, which looks up an order of the user whose run
// calls it. docs/embedding.md walks through it.
//
//	go run ./examples/embedding -keys demo-key-alice-0123=alice
//	curl -N localhost:8090/v1/chat -H 'Authorization: Bearer demo-key-alice-0123' -H 'Content-Type: application/json' \
//	  -d '{"query": "Where is my order A-1001? Check order_status."}'
//
// With neither OPENAI_API_KEY nor OPENAI_BASE_URL set it answers with the
// simulated model, which calls the tools a message names.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/server"
	"github.com/agentstream/agentstream/tools"
)

// agents is the program's config: its agent names the Go tool like a
// built-in one.
const agents = `
default_agent: shop
agents:
  - name: shop
    instructions: |
      You help the customers of a small shop with their orders. Look an
      order up with order_status; never guess its status.
    tools: [order_status, current_time]
    max_turns: 4
`

// orders are the shop's orders, by user, then by id.
var orders = map[string]map[string]string{
	"alice": {"A-1001": "shipped", "A-1002": "being packed"},
	"bob":   {"B-2001": "delivered"},
	"local": {"A-1001": "shipped"}, // the user of a server without keys
}

// orderStatus is the Go tool. The runner has checked the arguments against
// the schema before it is called; the run it serves is in ctx.
func orderStatus(ctx context.Context, args json.RawMessage) (string, error) {
	var in struct {
		OrderID string `json:"order_id"`
	}
	if err := json.Unmarshal(args, &in); err != nil {
		return "", err
	}
	run, ok := agentstream.RunInfoFrom(ctx)
	if !ok {
		return "", errors.New("order_status is called outside a run")
	}
	status, ok := orders[run.UserID][in.OrderID]
	if !ok {
		// The model reads this as the tool's output and can tell the user.
		return "", fmt.Errorf("user %s has no order %s", run.UserID, in.OrderID)
	}
	out, err := json.Marshal(map[string]string{"order_id": in.OrderID, "user": run.UserID, "status": status})
	return string(out), err
}

// timed gives a tool a timeout of its own (agentstream.TimedTool), instead
// of runs.tool_timeout.
type timed struct {
	agentstream.Tool
	timeout time.Duration
}

func (t timed) Timeout() time.Duration { return t.timeout }

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "listen `address`")
	db := flag.String("db", "embedding.db", "SQLite `file` of threads and runs")
	keys := flag.String("keys", "", "API keys, as `KEY=USER,…` (each key 16 characters or more); none: one local user, loopback only")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*addr, *db, *keys, logger); err != nil {
		logger.Error("embedding example", "err", err)
		os.Exit(1)
	}
}

func run(addr, db, keys string, logger *slog.Logger) error {
	cfg, err := config.Decode([]byte(agents))
	if err != nil {
		return err
	}
	cfg.Addr, cfg.DatabaseURL = addr, db
	// No key and no URL: the simulated model.
	cfg.OpenAI.APIKey, cfg.OpenAI.BaseURL = os.Getenv("OPENAI_API_KEY"), os.Getenv("OPENAI_BASE_URL")
	for kv := range strings.SplitSeq(keys, ",") {
		if kv == "" {
			continue
		}
		key, user, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("-keys: %q is not KEY=USER", kv)
		}
		cfg.Auth.Keys = append(cfg.Auth.Keys, config.APIKey{Key: key, User: user})
	}

	tool := tools.NewFunc("order_status", "Looks up one of the user's orders by its id.",
		`{"type":"object","properties":{"order_id":{"type":"string","description":"The order's id, e.g. A-1001.","examples":["A-1001"]}},"required":["order_id"],"additionalProperties":false}`,
		orderStatus)
	srv, err := server.New(context.Background(), cfg, logger, server.WithTools(timed{tool, 5 * time.Second}))
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	// Running runs get http.shutdown_timeout to finish; streams get their
	// terminal events; then the store closes.
	stop()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	return <-served
}
