package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/mcp"
	"github.com/agentstream/agentstream/tools"
)

// mcpConfigs are the config's MCP servers as the mcp package takes them.
func mcpConfigs(servers []config.MCPServer) []mcp.Config {
	out := make([]mcp.Config, len(servers))
	for i, s := range servers {
		out[i] = mcp.Config{
			Name: s.Name, Command: s.Command, Args: s.Args, Env: s.Env, Dir: s.Dir,
			URL: s.URL, Headers: s.Headers, Tools: s.Tools, Prefix: s.Prefix,
			Forward:  tools.Forward{UserHeader: s.Forward.UserHeader, ContextHeaders: s.Forward.ContextHeaders},
			Required: s.Required, ConnectTimeout: s.ConnectTimeout, Timeout: s.Timeout,
		}
	}
	return out
}

// startMCP starts the config's MCP servers (cfg has its defaults), whose
// tools may not be named like reserved, the other tools. What stops the
// start (a required server that failed, a clash) is config.Problems, each
// at its server's entry.
func startMCP(ctx context.Context, cfg config.Config, reserved []string, logger *slog.Logger) (*mcp.Set, error) {
	if len(cfg.MCPServers) == 0 {
		return nil, nil
	}
	set, err := mcp.Start(ctx, mcpConfigs(cfg.MCPServers), mcp.Options{Logger: logger, Reserved: reserved, Secrets: tools.NewSecrets(cfg.Secrets()...)})
	var probs mcp.Problems
	if errors.As(err, &probs) {
		return nil, mcpProblems(cfg, probs)
	}
	return set, err
}

// CheckMCPServers starts each of the MCP servers of cfg (defaults applied),
// reads its tools and stops it, and returns what is wrong: a server that
// cannot be started or reached, an allow-list naming tools a server does
// not have, tools offered under one name (by two servers, or by a server
// and a built-in or declared tool). `agentstream check-config --connect`
// reports them. An entry whose name or transport is itself a problem of
// the file (no name, a name twice, not exactly one of command and url) is
// not tried.
func CheckMCPServers(ctx context.Context, cfg config.Config) config.Problems {
	names := map[string]int{}
	for _, s := range cfg.MCPServers {
		names[s.Name]++
	}
	var try []config.MCPServer
	for _, s := range cfg.MCPServers {
		if s.Name != "" && names[s.Name] == 1 && (s.Command == "") != (s.URL == "") {
			try = append(try, s)
		}
	}
	if len(try) == 0 {
		return nil
	}
	reserved := builtinToolNames()
	for _, t := range cfg.Tools {
		reserved = append(reserved, t.Name)
	}
	return mcpProblems(cfg, mcp.Check(ctx, mcpConfigs(try), mcp.Options{Reserved: reserved, Secrets: tools.NewSecrets(cfg.Secrets()...)}))
}

func mcpProblems(cfg config.Config, probs mcp.Problems) config.Problems {
	out := make(config.Problems, len(probs))
	for i, p := range probs {
		out[i] = cfg.MCPProblem(p.Server, p.Key, p.Message)
	}
	return out
}

// builtinToolNames are the names of the built-in tools.
func builtinToolNames() []string { return tools.Builtins(time.Now).Names() }
