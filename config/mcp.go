package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// MCPServer is an MCP server (Model Context Protocol) whose tools the
// agents that name it (agents[].mcp_servers) may call: a child process
// spoken to over stdio (Command), or a Streamable HTTP endpoint (URL).
// docs/mcp.md shows every key.
type MCPServer struct {
	// Name is what agents call the server in their mcp_servers. Required;
	// no spaces or slashes.
	Name string `yaml:"name"`
	// Command starts the server as a child process, with Args, spoken to
	// over its stdin and stdout. Set Command or URL, not both.
	Command string   `yaml:"command"`
	Args    []string `yaml:"args" expand:"plain"`
	// Env adds environment variables to the child's. A child inherits
	// only HOME, LANG, LC_ALL, LC_CTYPE, LOGNAME, PATH, SHELL, TERM,
	// TMPDIR, TZ and USER of agentstream's environment, so that API keys
	// are not handed to every server. Default none.
	Env map[string]string `yaml:"env" expand:"secret"`
	// Dir is the child's working directory. Default: agentstream's.
	Dir string `yaml:"dir"`
	// URL is the server's Streamable HTTP endpoint (http:// or https://).
	URL string `yaml:"url" expand:"plain"`
	// Headers are sent with every request to URL, e.g. Authorization.
	// Default none.
	Headers map[string]string `yaml:"headers" expand:"secret"`
	// Tools is the allow-list: the server's tools (by the server's names
	// for them) that agents are offered. Default: all of them.
	Tools []string `yaml:"tools"`
	// Prefix starts the name each of the server's tools is offered under,
	// so that two servers' tools cannot share a name: letters, digits, _
	// and - only. Default none.
	Prefix string `yaml:"prefix"`
	// Forward is what each call tells the server of its run: as headers
	// (a url server), and in the call's _meta (both), the run's user id as
	// "agentstream/user_id" and the context keys the run has as the
	// object "agentstream/context". Default nothing.
	Forward Forward `yaml:"forward"`
	// Required makes agentstream refuse to start when the server cannot
	// be started or reached. Default false: the failure is logged, the
	// others start, and the server is tried again in the background.
	Required bool `yaml:"required"`
	// ConnectTimeout bounds starting (or connecting to) the server and
	// reading its tools, at start and at each reconnection. Default 30s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// Timeout bounds each call of the server's tools. Default
	// runs.tool_timeout.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultMCPConnectTimeout is mcp_servers[].connect_timeout's default.
const DefaultMCPConnectTimeout = 30 * time.Second

// mcpDefaults returns servers with their defaults set, in a new slice:
// the Config's own is left as it was.
func mcpDefaults(servers []MCPServer) []MCPServer {
	if servers == nil {
		return nil
	}
	out := slices.Clone(servers)
	for i := range out {
		def(&out[i].ConnectTimeout, DefaultMCPConnectTimeout)
	}
	return out
}

// MCPServerNames returns the names of the configured MCP servers.
func (c Config) MCPServerNames() []string {
	names := make([]string, len(c.MCPServers))
	for i, s := range c.MCPServers {
		names[i] = s.Name
	}
	return names
}

// validateMCP reports the problems of the mcp_servers entries.
func (c Config) validateMCP(bad func(path, format string, args ...any)) {
	names := map[string]string{}
	for i, s := range c.MCPServers {
		path := fmt.Sprintf("mcp_servers[%d]", i)
		declareName(bad, path, "MCP server", s.Name, "which agents use in their mcp_servers", names)
		switch {
		case s.Command == "" && s.URL == "":
			bad(path, "set command (a program spoken to over stdio) or url (a Streamable HTTP endpoint)")
		case s.Command != "" && s.URL != "":
			bad(path+".url", "set command (a program spoken to over stdio) or url (a Streamable HTTP endpoint), not both")
		case s.URL != "":
			if msg := checkMCPURL(s.URL); msg != "" {
				bad(path+".url", "%s", msg)
			}
			for _, key := range []struct {
				name string
				set  bool
			}{{"args", len(s.Args) > 0}, {"env", len(s.Env) > 0}, {"dir", s.Dir != ""}} {
				if key.set {
					bad(path+"."+key.name, "is for a server started with command; this one has a url")
				}
			}
		default:
			if len(s.Headers) > 0 {
				bad(path+".headers", "are sent to a server with a url; this one is started with command (give it env instead)")
			}
			for _, k := range sortedKeys(s.Env) {
				if k == "" || strings.ContainsAny(k, "=\x00") {
					bad(joinPath(path+".env", k), "%q is not an environment variable's name", k)
				}
			}
		}
		validateHeaders(s.Headers, path+".headers", bad)
		// A header is either configured or forwarded.
		s.Forward.validate(path+".forward", nil, bad)
		own := map[string]bool{}
		for h := range s.Headers {
			own[strings.ToLower(h)] = true
		}
		if h := s.Forward.UserHeader; own[strings.ToLower(h)] {
			bad(path+".forward.user_header", "%q is also in headers: a header is either configured or forwarded", h)
		}
		for _, k := range sortedKeys(s.Forward.ContextHeaders) {
			if h := s.Forward.ContextHeaders[k]; own[strings.ToLower(h)] {
				bad(joinPath(path+".forward.context_headers", k), "%q is also in headers: a header is either configured or forwarded", h)
			}
		}
		if s.Prefix != "" && strings.ContainsFunc(s.Prefix, func(r rune) bool { return !toolNameRune(r) }) {
			bad(path+".prefix", "%q: a prefix may hold only letters, digits, _ and -, as tool names do", s.Prefix)
		}
		allowed := map[string]int{}
		for j, t := range s.Tools {
			tp := fmt.Sprintf("%s.tools[%d]", path, j)
			if first, dup := allowed[t]; dup {
				bad(tp, "%q is listed twice (also tools[%d])", t, first)
			} else if t == "" {
				bad(tp, "empty: name a tool of the server")
			}
			allowed[t] = j
		}
		if s.ConnectTimeout < 0 {
			bad(path+".connect_timeout", "%v must not be negative", s.ConnectTimeout)
		}
		if s.Timeout < 0 {
			bad(path+".timeout", "%v must not be negative", s.Timeout)
		}
	}
}

// checkAgentMCPServers reports the mcp_servers an agent (at path) names
// that no mcp_servers entry declares, nor known (what a Go program adds).
func (c Config) checkAgentMCPServers(path string, servers, known []string, bad func(path, format string, args ...any)) {
	declared := append(c.MCPServerNames(), known...)
	for j, name := range servers {
		if slices.Contains(declared, name) {
			continue
		}
		hint := "no MCP server is declared: add it under mcp_servers"
		if len(declared) > 0 {
			hint = "the MCP servers are " + strings.Join(declared, ", ")
			if s := closest(name, declared); s != "" {
				hint = "did you mean " + s + "?"
			}
		}
		bad(fmt.Sprintf("%s.mcp_servers[%d]", path, j), "unknown MCP server %q; %s", name, hint)
	}
}

// checkMCPURL says what is wrong with an MCP server's URL, "" for nothing.
func checkMCPURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "not a URL: " + strings.ReplaceAll(err.Error(), s, redacted(s))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Sprintf("%q: an MCP server's url starts with http:// or https://", u.Redacted())
	}
	if u.Host == "" {
		return fmt.Sprintf("%q has no host", u.Redacted())
	}
	return ""
}

// redacted is a URL without its password, for messages.
func redacted(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(the URL)"
}

func toolNameRune(r rune) bool {
	return r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// MCPProblem is a problem found by starting the MCP server named server
// (about its setting key, "" for the server as a whole), placed at that
// server's entry in the file.
func (c Config) MCPProblem(server, key, message string) Problem {
	path := "mcp_servers"
	for i, s := range c.MCPServers {
		if s.Name == server {
			path = fmt.Sprintf("mcp_servers[%d]", i)
			if key != "" {
				path += "." + key
			}
			break
		}
	}
	p := c.src.place(path)
	p.Message = message
	return p
}
