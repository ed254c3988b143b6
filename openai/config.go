package openai

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults of Config.
const (
	DefaultBaseURL     = "https://api.openai.com/v1"
	DefaultMaxRetries  = 2
	DefaultIdleTimeout = 60 * time.Second
	// DefaultMaxRetryDelay caps the wait before a retry; it is lowered to
	// half the IdleTimeout when that is shorter.
	DefaultMaxRetryDelay = 8 * time.Second
)

// Config configures a Model. The zero value, with an APIKey, talks to
// OpenAI. Environment variables (OPENAI_API_KEY, OPENAI_BASE_URL, …) are
// never read: the caller passes everything here.
type Config struct {
	// APIKey is sent as "Authorization: Bearer <APIKey>". Empty sends no
	// Authorization header, for servers that need none (Ollama, a local
	// vLLM or llama.cpp server).
	APIKey string
	// BaseURL is the API root that "chat/completions" is appended to.
	// Default https://api.openai.com/v1. Any OpenAI-compatible server works:
	// Ollama http://localhost:11434/v1, vLLM and llama.cpp server
	// http://host:8000/v1.
	BaseURL string
	// MaxRetries is how many times a call is retried when the API answers
	// 408, 409, 429 or 5xx, or the connection fails, before any of the
	// answer has streamed (once streaming, a failure is final). 0 means the
	// default, 2; see DisableRetries. Negative is invalid.
	MaxRetries int
	// DisableRetries makes every call a single attempt.
	DisableRetries bool
	// MaxRetryDelay caps the wait before a retry. Waits grow from 0.5s,
	// doubling, with jitter; a Retry-After-Ms or Retry-After header from the
	// API sets the wait instead, and one longer than MaxRetryDelay stops
	// the retries (the call fails with the API's answer, for 429
	// CodeRateLimited). Default min(8s, IdleTimeout/2); it must be shorter
	// than IdleTimeout.
	MaxRetryDelay time.Duration
	// IdleTimeout bounds every silence of the API: the wait for response
	// headers on each attempt, and the gap between two streamed chunks. A
	// call that hears nothing for this long fails with
	// CodeUpstreamTimeout. Default 60s. Time spent in the caller's onDelta
	// does not count.
	IdleTimeout time.Duration
	// HTTPClient makes the requests. Default: a client of its own whose
	// transport is a clone of http.DefaultTransport keeping up to 64 idle
	// connections per host. A client's Timeout bounds the whole call,
	// stream included, so leave it zero.
	HTTPClient *http.Client
	// Headers are extra headers sent with every request (for example
	// OpenAI-Organization, or a proxy's own credential).
	Headers map[string]string
	// H2C speaks HTTP/2 without TLS to an http:// BaseURL, for servers
	// known to accept it (the simulator does): many calls then share one
	// connection, as they do with an https:// API, which negotiates
	// HTTP/2 by itself. Ignored with HTTPClient. Default false.
	H2C bool
}

// WithDefaults returns c with its zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.MaxRetries == 0 && !c.DisableRetries {
		c.MaxRetries = DefaultMaxRetries
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxRetryDelay == 0 {
		c.MaxRetryDelay = min(DefaultMaxRetryDelay, c.IdleTimeout/2)
	}
	return c
}

// Validate reports what is wrong with c. Call it on c.WithDefaults().
func (c Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.BaseURL); err != nil {
		errs = append(errs, fmt.Errorf("openai: bad BaseURL %q: %v", c.BaseURL, err))
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("openai: BaseURL %q is not an http(s) URL with a host", c.BaseURL))
	}
	if c.MaxRetries < 0 {
		errs = append(errs, fmt.Errorf("openai: MaxRetries %d is negative", c.MaxRetries))
	}
	if c.IdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("openai: IdleTimeout %v is not positive", c.IdleTimeout))
	}
	if c.MaxRetryDelay <= 0 {
		errs = append(errs, fmt.Errorf("openai: MaxRetryDelay %v is not positive", c.MaxRetryDelay))
	} else if c.IdleTimeout > 0 && c.MaxRetryDelay >= c.IdleTimeout {
		errs = append(errs, fmt.Errorf("openai: MaxRetryDelay %v is not shorter than IdleTimeout %v", c.MaxRetryDelay, c.IdleTimeout))
	}
	for k, v := range c.Headers {
		if k == "" || strings.ContainsAny(k, " \t\r\n:") || strings.ContainsAny(v, "\r\n") {
			errs = append(errs, fmt.Errorf("openai: bad header %q", k))
		}
	}
	return errors.Join(errs...)
}
