package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMCPServersDecode(t *testing.T) {
	t.Parallel()
	file := `mcp_servers:
  - name: files
    command: node
    args: [server.js, stdio]
    env: {ROOT: /srv/files}
    dir: /srv
    required: true
    connect_timeout: 5s
    timeout: 2s
  - name: remote
    url: https://mcp.example/mcp
    headers: {Authorization: "Bearer x"}
    tools: [read_file]
    prefix: files_
    forward: {user_header: X-User-Id, context_headers: {pregnancy_week: X-Pregnancy-Week}}
agents:
  - name: helper
    mcp_servers: [files, remote]
`
	c, err := Load("c.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	f, r := c.MCPServers[0], c.MCPServers[1]
	if f.Name != "files" || f.Command != "node" || strings.Join(f.Args, " ") != "server.js stdio" || f.Env["ROOT"] != "/srv/files" ||
		f.Dir != "/srv" || !f.Required || f.ConnectTimeout != 5*time.Second || f.Timeout != 2*time.Second {
		t.Errorf("files: %+v", f)
	}
	if r.URL != "https://mcp.example/mcp" || r.Headers["Authorization"] != "Bearer x" || strings.Join(r.Tools, ",") != "read_file" ||
		r.Prefix != "files_" || r.Forward.UserHeader != "X-User-Id" || r.Forward.ContextHeaders["pregnancy_week"] != "X-Pregnancy-Week" ||
		r.Required || r.ConnectTimeout != DefaultMCPConnectTimeout || r.Timeout != 0 {
		t.Errorf("remote: %+v", r)
	}
	if got := c.MCPServerNames(); strings.Join(got, ",") != "files,remote" {
		t.Errorf("names %v", got)
	}
}

// Every mistake in mcp_servers, and an agent naming a server that is not
// declared, is a problem at its line.
func TestMCPServersProblems(t *testing.T) {
	t.Parallel()
	file := `mcp_servers:
  - name: files
    command: node
    url: http://127.0.0.1:1/mcp
  - name: files
    command: node
    headers: {Authorization: x}
  - name: "a b"
  - name: remote
    url: ftp://user:hunter2@mcp.example/
    args: [x]
    env: {A: b}
    dir: /tmp
    prefix: "files."
    tools: [read, read, ""]
    connect_timeout: -1s
    timeout: -2s
    headers: {"X Bad": v, X-User-Id: v}
    forward: {user_header: X-User-Id, context_headers: {week: "X:Week"}}
  - name: relative
    url: /mcp
agents:
  - name: helper
    mcp_servers: [files, remot, nothing]
`
	_, err := Load("c.yaml", []byte(file))
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v, want Problems", err)
	}
	want := []struct {
		line int
		path string
		text string
	}{
		{4, "mcp_servers[0].url", "set command (a program spoken to over stdio) or url (a Streamable HTTP endpoint), not both"},
		{5, "mcp_servers[1].name", `MCP server "files" is declared twice (also mcp_servers[0]): rename or remove one`},
		{7, "mcp_servers[1].headers", "are sent to a server with a url; this one is started with command (give it env instead)"},
		{8, "mcp_servers[2].name", `"a b" may not contain spaces or slashes`},
		{8, "mcp_servers[2]", "set command (a program spoken to over stdio) or url (a Streamable HTTP endpoint)"},
		{10, "mcp_servers[3].url", `"ftp://user:xxxxx@mcp.example/": an MCP server's url starts with http:// or https://`},
		{11, "mcp_servers[3].args", "is for a server started with command; this one has a url"},
		{12, "mcp_servers[3].env", "is for a server started with command; this one has a url"},
		{13, "mcp_servers[3].dir", "is for a server started with command; this one has a url"},
		{14, "mcp_servers[3].prefix", `"files.": a prefix may hold only letters, digits, _ and -, as tool names do`},
		{15, "mcp_servers[3].tools[1]", `"read" is listed twice (also tools[0])`},
		{15, "mcp_servers[3].tools[2]", "empty: name a tool of the server"},
		{16, "mcp_servers[3].connect_timeout", "-1s must not be negative"},
		{17, "mcp_servers[3].timeout", "-2s must not be negative"},
		{18, "mcp_servers[3].headers.X Bad", "\"X Bad\" is not a header name (letters, digits and !#$%&'*+-.^_`|~)"},
		{19, "mcp_servers[3].forward.user_header", `"X-User-Id" is also in headers: a header is either configured or forwarded`},
		{19, "mcp_servers[3].forward.context_headers.week", "\"X:Week\" is not a header name (letters, digits and !#$%&'*+-.^_`|~)"},
		{21, "mcp_servers[4].url", `"/mcp": an MCP server's url starts with http:// or https://`},
		{24, "agents[0].mcp_servers[1]", `unknown MCP server "remot"; did you mean remote?`},
		{24, "agents[0].mcp_servers[2]", `unknown MCP server "nothing"; the MCP servers are files, files, a b, remote, relative`},
	}
	if len(ps) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(ps), len(want), err)
	}
	for i, w := range want {
		if p := ps[i]; p.Line != w.line || p.Path != w.path || p.Message != w.text {
			t.Errorf("problem %d: %+v\nwant line %d, %s: %s", i, p, w.line, w.path, w.text)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("a URL's password is in a problem: %v", err)
	}

	// Without any server declared, an agent naming one is told so.
	_, err = Load("c.yaml", []byte("agents:\n  - name: helper\n    mcp_servers: [files]\n"))
	if err == nil || err.Error() != `c.yaml:3:19: agents[0].mcp_servers[0]: unknown MCP server "files"; no MCP server is declared: add it under mcp_servers` {
		t.Fatalf("error %v", err)
	}
}

// The example config of an MCP server beside the pregnancy companion
// loads.
func TestMCPExample(t *testing.T) {
	t.Parallel()
	name := filepath.Join("..", "examples", "mcp-server.yaml")
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(name, data)
	if err != nil {
		t.Fatalf("the example: %v", err)
	}
	c = c.WithDefaults()
	if len(c.MCPServers) == 0 {
		t.Fatal("the example declares no MCP server")
	}
	uses := false
	for _, a := range c.Agents {
		uses = uses || len(a.MCPServers) > 0
	}
	if !uses {
		t.Fatal("no agent of the example names an MCP server")
	}
}

// ${NAME} is read from the environment in url, headers, env and args;
// what it brings into headers and env is a secret; an unset one is a
// problem at its line.
func TestMCPServersExpand(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"MCP_HOST": "mcp.example", "MCP_TOKEN": "tok-0123456789", "ROOT_DIR": "/srv/files", "GH_TOKEN": "ghp-0123456789"}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	file := `mcp_servers:
  - name: files
    command: node
    args: [server.js, "${ROOT_DIR}"]
    env: {GITHUB_TOKEN: "${GH_TOKEN}"}
  - name: remote
    url: https://${MCP_HOST}/mcp
    headers: {Authorization: "Bearer ${MCP_TOKEN}"}
`
	c, err := LoadEnv("c.yaml", []byte(file), lookup)
	if err != nil {
		t.Fatal(err)
	}
	f, r := c.MCPServers[0], c.MCPServers[1]
	if f.Args[1] != "/srv/files" || f.Env["GITHUB_TOKEN"] != "ghp-0123456789" || r.URL != "https://mcp.example/mcp" || r.Headers["Authorization"] != "Bearer tok-0123456789" {
		t.Fatalf("expanded: %+v %+v", f, r)
	}
	secrets := strings.Join(c.Secrets(), " ")
	if !strings.Contains(secrets, "tok-0123456789") || !strings.Contains(secrets, "ghp-0123456789") ||
		strings.Contains(secrets, "/srv/files") || strings.Contains(secrets, "mcp.example") {
		t.Fatalf("secrets %q: want the header's token and the env's, not the args or the url", secrets)
	}
	// A variable that brings a line break into a header is a problem at
	// the header's line, as for an HTTP tool, and the value is not quoted.
	vars["MCP_TOKEN"] = "tok-0123456789\r\nX-Injected: 1"
	_, err = LoadEnv("c.yaml", []byte(file), lookup)
	if err == nil || !strings.HasPrefix(err.Error(), "c.yaml:8:") || !strings.Contains(err.Error(), "mcp_servers[1].headers.Authorization: the value holds a line break") ||
		strings.Contains(err.Error(), "tok-0123456789") {
		t.Fatalf("a header with a line break: %v", err)
	}
	vars["MCP_TOKEN"] = "tok-0123456789"
	// An unset variable is a problem at its line.
	delete(vars, "GH_TOKEN")
	_, err = LoadEnv("c.yaml", []byte(file), lookup)
	if err == nil || !strings.HasPrefix(err.Error(), "c.yaml:5:") || !strings.Contains(err.Error(), "GH_TOKEN") {
		t.Fatalf("an unset variable: %v", err)
	}
}
