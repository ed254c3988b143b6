package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/agentstream/agentstream/sim"
)

const simUsage = `Usage: agentstream sim [flags]

A simulated OpenAI-compatible chat model (POST /v1/chat/completions, GET
/v1/models), for developing and testing without a real model. Every text
it writes starts with [simulated]. A user message that names offered
tools gets one call of each in a single reply (parallel tool calls), with
arguments made from each tool's JSON Schema; a message that says "wrong
arguments" (or the header X-Sim-Arguments: wrong) gets arguments the
schema refuses, and, once the tool answers with an error, a corrected
second attempt. Tool results are answered by quoting them.

Flags:
`

// simulate runs the simulated model until ctx ends.
func simulate(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("agentstream sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		_, _ = fmt.Fprint(fs.Output(), simUsage)
		fs.PrintDefaults()
	}
	addr := fs.String("addr", "127.0.0.1:8081", "listen `address`")
	tokens := fs.Int("tokens", sim.DefaultTokens, "reply length in tokens; 0 or less: the default")
	pace := fs.Duration("pace", sim.DefaultPace, "time between tokens, e.g. 50ms; negative: none, 0: the default")
	ttft := fs.Duration("ttft", sim.DefaultTTFT, "time to the first token; negative: none, 0: the default")
	fault := fs.String("fault", "", "answer every request with a fault: 429, 500, cut or stall")
	faultAfter := fs.Int("fault-after", 0, "with --fault cut or stall, the tokens sent before it")
	stamp := fs.Bool("stamp", false, "generated tokens carry their send time (t<unix-micros>), for agentstream bench")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	opts := sim.Options{Tokens: *tokens, Pace: *pace, TTFT: *ttft, Fault: sim.Fault(*fault), FaultAfter: *faultAfter, Stamp: *stamp, Record: -1}
	if err := opts.WithDefaults().Validate(); err != nil {
		_, _ = fmt.Fprintf(stderr, "agentstream sim: %v\n", err)
		return 2
	}
	running, err := sim.Start(*addr, opts)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "agentstream sim: %v\n", err)
		return 1
	}
	defer running.Close()
	_, _ = fmt.Fprintf(stderr, "agentstream sim: a SIMULATED OpenAI-compatible model (not a real one) at %s\n"+
		"  set OPENAI_BASE_URL=%s to point a client at it\n", running.URL(), running.URL())
	<-ctx.Done()
	return 0
}
