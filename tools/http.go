package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/agentstream/agentstream"
)

// DefaultMaxResponseBytes is an HTTP tool's answer size cap when its
// config sets none.
const DefaultMaxResponseBytes = 64 << 10

// HTTPMethods are the methods an HTTP tool may use. Those in
// bodyMethods send the arguments as a JSON body; the others as query
// parameters.
var HTTPMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

var bodyMethods = []string{http.MethodPost, http.MethodPut, http.MethodPatch}

// excerptBytes bounds the excerpt of a failed answer the model is shown.
const excerptBytes = 300

// HTTPConfig is a tool that calls an HTTP endpoint.
type HTTPConfig struct {
	Name        string
	Description string
	// Parameters is the JSON Schema of the arguments object; empty means
	// any object.
	Parameters json.RawMessage
	// URL is the endpoint, http:// or https://.
	URL string
	// Method is one of HTTPMethods; default POST. POST, PUT and PATCH
	// send the arguments as the JSON body; GET and DELETE as query
	// parameters, a string as it is, null left out, any other value (a
	// number, a boolean, a list, an object) as its JSON text.
	Method string
	// Headers are sent with every call (after Content-Type and User-Agent,
	// which they may replace).
	Headers map[string]string
	// Timeout bounds each call; 0 means the runner's tool timeout.
	Timeout time.Duration
	// MaxResponseBytes caps the answer read; a larger answer is a tool
	// error (a cut JSON document would mislead the model). Default
	// DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// Forward sends facts of the run as headers.
	Forward Forward
	// Client sends the requests; default a client of its own.
	Client *http.Client
	// Logger logs each failed call (the tool, the run, the status or the
	// network error; never a header, the URL's path and query, or the
	// answer, which may echo a secret). Default: no logs.
	Logger *slog.Logger
}

// HTTP is a tool that calls an HTTP endpoint with the model's arguments and
// answers with the endpoint's answer. An answer that is not 2xx, too
// large, late or never comes is a tool error the model is shown (a short
// excerpt of a failed answer with its status), never a failed run. The
// call's context ends the request: a cancelled run closes it.
type HTTP struct {
	cfg  HTTPConfig
	spec agentstream.ToolSpec
	u    *url.URL
}

var _ agentstream.TimedTool = (*HTTP)(nil)

// defaultClient is shared by the HTTP tools that bring no client: one
// connection pool for all of them.
var defaultClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}

// NewHTTP returns the HTTP tool c describes; an error for a URL or a
// method it cannot call.
func NewHTTP(c HTTPConfig) (*HTTP, error) {
	if c.Method == "" {
		c.Method = http.MethodPost
	}
	c.Method = strings.ToUpper(c.Method)
	if !slices.Contains(HTTPMethods, c.Method) {
		return nil, fmt.Errorf("tool %q: method %q is not one of %s", c.Name, c.Method, strings.Join(HTTPMethods, ", "))
	}
	u, err := ParseToolURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("tool %q: %w", c.Name, err)
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.Client == nil {
		c.Client = defaultClient
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	params := c.Parameters
	if len(params) == 0 {
		params = json.RawMessage(`{"type":"object","properties":{}}`)
	}
	return &HTTP{
		cfg:  c,
		spec: agentstream.ToolSpec{Name: c.Name, Description: c.Description, Parameters: params},
		u:    u,
	}, nil
}

// ParseToolURL parses an HTTP tool's URL: absolute, http or https, with a
// host. Its errors do not quote the URL, which may hold a secret.
func ParseToolURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return nil, errors.New("the url is empty")
	case err != nil:
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("the url is not a URL: %v", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, errors.New("the url must start with http:// or https://")
	case u.Host == "":
		return nil, errors.New("the url has no host")
	}
	return u, nil
}

// Spec implements agentstream.Tool.
func (t *HTTP) Spec() agentstream.ToolSpec { return t.spec }

// Timeout implements agentstream.TimedTool.
func (t *HTTP) Timeout() time.Duration { return t.cfg.Timeout }

// Call implements agentstream.Tool: one request, its answer's body.
func (t *HTTP) Call(ctx context.Context, args json.RawMessage) (string, error) {
	out, why, err := t.call(ctx, args)
	if err != nil {
		if why == "" {
			why = err.Error()
		}
		ri, _ := agentstream.RunInfoFrom(ctx)
		t.cfg.Logger.Warn("an HTTP tool's call failed; the model is told why",
			"tool", t.spec.Name, "run_id", ri.RunID, "host", t.u.Host, "why", why)
	}
	return out, err
}

// call makes the request. On failure, why is what may be logged of it
// when err may hold a secret (an excerpt of the answer); "" when err
// holds none.
func (t *HTTP) call(ctx context.Context, args json.RawMessage) (out, why string, err error) {
	req, err := t.request(ctx, args)
	if err != nil {
		return "", "", err
	}
	resp, err := t.cfg.Client.Do(req)
	if err != nil {
		return "", "", t.failed(ctx, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, t.cfg.MaxResponseBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			return "", "", t.failed(ctx, err)
		}
		return "", "", fmt.Errorf("reading the answer of the tool's server (HTTP %s): %v", resp.Status, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", "HTTP " + resp.Status, fmt.Errorf("the tool's server answered HTTP %s: %s", resp.Status, excerpt(body, excerptBytes))
	}
	if int64(len(body)) > t.cfg.MaxResponseBytes {
		return "", "", fmt.Errorf("the tool's answer is larger than %d bytes (its http.max_response_bytes), so it was not passed on", t.cfg.MaxResponseBytes)
	}
	if len(body) == 0 {
		return fmt.Sprintf("(HTTP %s, with no content)", resp.Status), "", nil
	}
	return string(body), "", nil
}

// request builds the call's request from the model's arguments.
func (t *HTTP) request(ctx context.Context, args json.RawMessage) (*http.Request, error) {
	if len(bytes.TrimSpace(args)) == 0 {
		args = json.RawMessage("{}")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(args, &fields); err != nil || fields == nil {
		return nil, errors.New("the arguments must be a JSON object")
	}
	u := *t.u
	var body io.Reader
	if slices.Contains(bodyMethods, t.cfg.Method) {
		body = bytes.NewReader(args)
	} else {
		q := u.Query()
		for name, raw := range fields {
			v, keep := queryValue(raw)
			if keep {
				q.Add(name, v)
			}
		}
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, t.cfg.Method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("building the request: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, text/plain;q=0.9, */*;q=0.1")
	req.Header.Set("User-Agent", "agentstream")
	for name, v := range t.cfg.Headers {
		req.Header.Set(name, v)
	}
	t.cfg.Forward.Apply(ctx, req.Header)
	return req, nil
}

// queryValue is an argument's query parameter: a string as it is, any
// other value as its compact JSON text; null is left out.
func queryValue(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if string(raw) == "null" {
		return "", false
	}
	var s string
	if raw[0] == '"' && json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw), true
	}
	return b.String(), true
}

// failed is the tool error of a request that got no answer: the run's
// end, the timeout, or a server that cannot be reached. It names the
// server's host, never the whole URL (its path or query may hold a
// secret).
func (t *HTTP) failed(ctx context.Context, err error) error {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		if t.cfg.Timeout > 0 {
			return fmt.Errorf("the tool did not answer within %s", t.cfg.Timeout)
		}
		return errors.New("the tool did not answer within its timeout (runs.tool_timeout)")
	case ctx.Err() != nil:
		return errors.New("the run was stopped while the tool ran")
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("could not reach the tool's server %s: %v", t.u.Host, err)
}

// excerpt is the start of an answer, for an error: its runs of white
// space made one space, at most n bytes of it, cut at a character.
func excerpt(body []byte, n int) string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(body), "\uFFFD")), " ")
	if s == "" {
		return "(no content)"
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + " …"
}
