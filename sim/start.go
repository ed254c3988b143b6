package sim

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"
)

// Running is a Server listening on a TCP address.
type Running struct {
	srv  *Server
	hs   *http.Server
	ln   net.Listener
	done chan struct{}
	err  error
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves a new
// Server with opts until Close.
func Start(addr string, opts Options) (*Running, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	r := &Running{srv: New(opts), ln: ln, done: make(chan struct{})}
	r.hs = &http.Server{Handler: r.srv, ReadHeaderTimeout: 10 * time.Second}
	// HTTP/1.1, and HTTP/2 without TLS for clients that know to use it
	// (OpenAI's API speaks HTTP/2, over TLS): many streams then share a
	// connection, as they do in production.
	r.hs.Protocols = new(http.Protocols)
	r.hs.Protocols.SetHTTP1(true)
	r.hs.Protocols.SetUnencryptedHTTP2(true)
	go func() {
		defer close(r.done)
		if err := r.hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			r.err = err
		}
	}()
	return r, nil
}

// URL returns the base URL an OpenAI client wants: "http://HOST:PORT/v1".
func (r *Running) URL() string { return "http://" + r.ln.Addr().String() + "/v1" }

// Addr returns the address listened on, "HOST:PORT".
func (r *Running) Addr() string { return r.ln.Addr().String() }

// Server returns the server, for its options, records and counters.
func (r *Running) Server() *Server { return r.srv }

// Close stops listening, closes every connection (which ends the requests
// being served, stalled ones included) and waits, up to 5 seconds, for
// their handlers to return.
func (r *Running) Close() error {
	err := r.hs.Close()
	<-r.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if werr := r.srv.WaitActive(ctx, 0); werr != nil && err == nil {
		err = errors.New("sim: requests still active 5s after Close")
	}
	if err == nil {
		err = r.err
	}
	return err
}
