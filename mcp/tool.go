package mcp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/tools"
)

// MaxNameLen is the longest tool name model APIs accept.
const MaxNameLen = 64

// Name is the name a server's tool is offered under: prefix and the
// server's name for it, with each character model APIs refuse (they accept
// ^[a-zA-Z0-9_-]{1,64}$) replaced by "_", and when that is longer than 64
// characters, its first 55 and "_" and the first 8 hex digits of the
// SHA-256 of prefix and name, so that two long names stay apart.
func Name(prefix, name string) string {
	full := prefix + name
	var b strings.Builder
	for _, r := range full {
		if r < 0x80 && (r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	out := b.String()
	if out == "" {
		out = "_"
	}
	if len(out) > MaxNameLen {
		sum := sha256.Sum256([]byte(full))
		out = out[:MaxNameLen-9] + "_" + hex.EncodeToString(sum[:4])
	}
	return out
}

// tool is one of a server's tools, as offered to agents.
type tool struct {
	src *Source
	// remote is the server's name for it; spec.Name the name it is
	// offered under.
	remote string
	spec   agentstream.ToolSpec
}

// build makes the tools the server offers of list: those of its
// allow-list (all without one), named by Name.
func (s *Source) build(list []*sdk.Tool) []*tool {
	var out []*tool
	for _, t := range list {
		if len(s.cfg.Tools) > 0 && !slices.Contains(s.cfg.Tools, t.Name) {
			continue
		}
		params, err := json.Marshal(t.InputSchema)
		if err != nil || t.InputSchema == nil {
			params = json.RawMessage(`{"type":"object"}`)
		}
		desc := t.Description
		if desc == "" {
			desc = t.Title
		}
		out = append(out, &tool{src: s, remote: t.Name, spec: agentstream.ToolSpec{
			Name: Name(s.cfg.Prefix, t.Name), Description: desc, Parameters: params,
		}})
	}
	return out
}

func (t *tool) Spec() agentstream.ToolSpec { return t.spec }

// Timeout is the server's call timeout (0: the runner's).
func (t *tool) Timeout() time.Duration { return t.src.cfg.Timeout }

// Call calls the tool on the server. Its result is the text the server
// answered, or its structured content as JSON; isError and a server that
// is not available are errors (the model sees them). A ctx that ends
// cancels the call on the server.
func (t *tool) Call(ctx context.Context, args json.RawMessage) (string, error) {
	s := t.src
	c, err := s.session(ctx)
	if err != nil {
		return "", err
	}
	params := &sdk.CallToolParams{Name: t.remote, Arguments: args}
	if meta := s.meta(ctx); meta != nil {
		params.Meta = meta
	}
	res, err := c.session.CallTool(ctx, params)
	switch {
	case ctx.Err() != nil:
		return "", ctx.Err()
	case err != nil && broken(err):
		s.lost(c, err)
		return "", fmt.Errorf("MCP server %s is not available: the connection was lost (%v)", s.cfg.Name, err)
	case err != nil:
		return "", fmt.Errorf("MCP server %s: %v", s.cfg.Name, err)
	}
	out := resultText(res)
	if res.IsError {
		if out == "" {
			out = "the tool failed, without saying why"
		}
		return "", errors.New(out)
	}
	return out, nil
}

// broken reports whether a call's error means the connection is gone,
// rather than an answer from the server.
func broken(err error) bool {
	var ue *url.Error
	return errors.Is(err, sdk.ErrConnectionClosed) || errors.Is(err, sdk.ErrSessionMissing) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ue)
}

// resultText is what the model is told of a result: its structured
// content as JSON when it has some (the tool's declared output), else its
// text contents, one a line. Other contents are named, not sent.
func resultText(res *sdk.CallToolResult) string {
	if res.StructuredContent != nil {
		if b, err := json.Marshal(res.StructuredContent); err == nil {
			return string(b)
		}
	}
	var parts []string
	for _, c := range res.Content {
		switch c := c.(type) {
		case *sdk.TextContent:
			parts = append(parts, c.Text)
		case *sdk.ImageContent:
			parts = append(parts, fmt.Sprintf("[an image (%s) the model is not shown]", c.MIMEType))
		case *sdk.AudioContent:
			parts = append(parts, fmt.Sprintf("[audio (%s) the model is not given]", c.MIMEType))
		case *sdk.ResourceLink:
			parts = append(parts, fmt.Sprintf("[resource %s]", c.URI))
		case *sdk.EmbeddedResource:
			if c.Resource != nil && c.Resource.Text != "" {
				parts = append(parts, c.Resource.Text)
			} else if c.Resource != nil {
				parts = append(parts, fmt.Sprintf("[resource %s]", c.Resource.URI))
			}
		}
	}
	return strings.Join(parts, "\n")
}

// meta is the _meta of a call: what Forward asks of the run; nil for
// nothing.
func (s *Source) meta(ctx context.Context) sdk.Meta {
	ri, ok := agentstream.RunInfoFrom(ctx)
	if !ok {
		return nil
	}
	m := sdk.Meta{}
	if s.cfg.Forward.UserHeader != "" {
		m[MetaUserID] = ri.UserID
	}
	fwd := map[string]any{}
	for key := range s.cfg.Forward.ContextHeaders {
		if v, ok := ri.Context[key]; ok && v != nil {
			fwd[key] = v
		}
	}
	if len(fwd) > 0 {
		m[MetaContext] = fwd
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// headerTransport adds a Streamable HTTP server's headers to each of its
// requests, and to those of a tool call (whose context carries RunInfo)
// the forwarded ones.
type headerTransport struct {
	base    http.RoundTripper
	headers map[string]string
	forward tools.Forward
}

func (h *headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	_, isCall := agentstream.RunInfoFrom(req.Context())
	if len(h.headers) == 0 && !isCall {
		return h.base.RoundTrip(req)
	}
	req = req.Clone(req.Context()) // a RoundTripper must not change its request
	for k, v := range h.headers {
		req.Header.Set(k, v)
	}
	h.forward.Apply(req.Context(), req.Header)
	return h.base.RoundTrip(req)
}
