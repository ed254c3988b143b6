// Command agentstream runs LLM agents and streams every step to clients
// over Server-Sent Events.
//
//	agentstream serve   the server (SQLite and the simulated model by default)
//	agentstream check-config FILE   every problem of a config file, at its line
//	                                (--connect: and of its MCP servers)
//	agentstream keys    API keys kept hashed in the store: create, list, revoke
//	agentstream sim     the simulated OpenAI-compatible model on its own
//	agentstream bench   a load generator: streams through the server, measured
//	                    (agentstream bench relay: the bare relay --baseline loads)
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, stop, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `agentstream runs LLM agents and streams every step over Server-Sent Events.

Usage:
  agentstream serve [flags]   run the server (agentstream serve -h for flags)
  agentstream check-config FILE
                              check a config file: every problem, at its line
  agentstream keys create --user NAME [--name LABEL]
                              make an API key (printed once); keys list, keys revoke ID
                              (agentstream keys help for more)
  agentstream sim [flags]     run the simulated OpenAI-compatible model
  agentstream bench [flags]   load a server with streaming clients and measure it
  agentstream bench relay     the bare net/http relay that bench --baseline loads
  agentstream version         print the version
`

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func run(ctx context.Context, stopSignals func(), args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		_, _ = fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(ctx, stopSignals, args[1:], getenv, stderr)
	case "check-config":
		return checkConfig(ctx, args[1:], getenv, stdout, stderr)
	case "keys":
		return keysCommand(ctx, args[1:], getenv, stdout, stderr)
	case "sim":
		return simulate(ctx, args[1:], stderr)
	case "bench":
		return benchmark(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-v":
		_, _ = fmt.Fprintln(stdout, "agentstream", version)
		return 0
	case "help", "-h", "--help":
		_, _ = fmt.Fprint(stdout, usage)
		return 0
	}
	_, _ = fmt.Fprintf(stderr, "agentstream: unknown command %q\n\n%s", args[0], usage)
	return 2
}
