package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/server"
)

const checkConfigUsage = `Usage: agentstream check-config [flags] FILE

Checks a config file as agentstream serve reads it, without starting
anything, and prints every problem at once, one a line, at its place in the
file (FILE:LINE:COL: key: what is wrong), as serve does.

The file's ${NAME} references are read from the environment, as serve
reads them: an unset variable is a problem. The environment variables and
flags that override the file's settings for serve (AGENTSTREAM_ADDR,
OPENAI_API_KEY, --addr, …) are not applied: serve checks those when it
starts, naming the variable or flag.

With --connect, it also starts (or connects to) each MCP server of the
file, reads its tools and stops it: a server that cannot be started or
reached, an allow-list naming tools a server does not have, and tools that
two servers (or a server and another tool) would offer under one name are
problems too, at the server's entry. Each server has its connect_timeout.

Exit status: 0 when the file is valid (a one-line summary is printed), 1
when it has problems, 2 for a usage error or a file that cannot be read.
`

// checkConfig is `agentstream check-config`: config.Load on the file, as
// serve calls it, and its problems printed as serve prints them.
// Its ${NAME} references are read from getenv, then the process's
// environment (which is getenv in main).
func checkConfig(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("agentstream check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	connect := fs.Bool("connect", false, "also start each MCP server, list its tools and stop it")
	fs.Usage = func() {
		_, _ = fmt.Fprint(fs.Output(), checkConfigUsage)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			_, _ = fmt.Fprint(fs.Output(), "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	// Flags may come after FILE too: parsing stops at the first argument
	// that is not a flag, so it resumes after each one.
	var files []string
	for rest := args; ; rest = fs.Args()[1:] {
		if err := fs.Parse(rest); errors.Is(err, flag.ErrHelp) {
			return 0
		} else if err != nil {
			return 2 // the flag package printed the error and the usage
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
	}
	if len(files) != 1 {
		_, _ = fmt.Fprintf(stderr, "agentstream check-config: want one config file, got %d\n\n", len(files))
		fs.Usage()
		return 2
	}
	path := files[0]
	data, err := os.ReadFile(path)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "agentstream check-config: reading the config file: %v\n", err)
		return 2
	}

	var problems config.Problems
	lookup := func(name string) (string, bool) {
		if v := getenv(name); v != "" {
			return v, true
		}
		return os.LookupEnv(name) // set but empty is not unset
	}
	cfg, err := config.LoadEnv(path, data, lookup)
	if err != nil && !errors.As(err, &problems) {
		_, _ = fmt.Fprintf(stderr, "agentstream check-config: %v\n", err)
		return 2
	}
	// Checks beyond the file itself append to problems here.
	if *connect {
		problems = append(problems, server.CheckMCPServers(ctx, cfg.WithDefaults())...)
		// In the file's order, as Load sorts its own.
		sort.SliceStable(problems, func(i, j int) bool {
			a, b := problems[i], problems[j]
			if (a.Line == 0) != (b.Line == 0) {
				return b.Line == 0
			}
			return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
		})
	}
	if len(problems) > 0 {
		_, _ = fmt.Fprintf(stderr, "agentstream check-config: invalid configuration (%s):\n%v\n", plural(len(problems), "problem"), problems)
		return 1
	}
	_, _ = fmt.Fprintf(stdout, "ok: %s: %s\n", path, summary(cfg.WithDefaults(), *connect))
	return 0
}

// summary says what a valid config declares, in a few words: "2 agents
// (default: helper), 3 tools, 1 model endpoint; agents without one use
// https://api.openai.com/v1". Tools are those declared and the built-in
// ones agents name.
func summary(cfg config.Config, connected bool) string {
	var tools []string
	for _, t := range cfg.Tools {
		tools = append(tools, t.Name)
	}
	for _, a := range cfg.Agents {
		for _, t := range a.Tools {
			if !slices.Contains(tools, t) {
				tools = append(tools, t)
			}
		}
	}
	parts := []string{
		fmt.Sprintf("%s (default: %s)", plural(len(cfg.Agents), "agent"), cfg.DefaultAgent),
		plural(len(tools), "tool"),
		plural(len(cfg.Models), "model endpoint"),
	}
	if n := len(cfg.MCPServers); n > 0 && connected {
		parts = append(parts, plural(n, "MCP server")+" (each started, its tools listed)")
	} else if n > 0 {
		parts = append(parts, plural(n, "MCP server")+" (not started: --connect starts them)")
	}
	// The environment may still give serve a key or URL: say so.
	others := "agents without one use " + config.ShowURL(cfg.OpenAI.BaseURL)
	if cfg.UsesSim() {
		others = "agents without one use the simulated model unless OPENAI_API_KEY or OPENAI_BASE_URL is set"
	}
	return strings.Join(parts, ", ") + "; " + others
}
