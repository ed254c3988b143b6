package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/httpapi"
	"github.com/agentstream/agentstream/sim"
)

const testKey = "test-key-0123456789abcdef"

// trickle sends a request's headers announcing a 100,000-byte body, then
// the body a byte every 100ms (it would take almost 3 hours), until the
// connection fails or the test ends. It returns the connection, whose
// reads time out after a minute.
func trickle(t *testing.T, addr, method, path, auth string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	head := method + " " + path + " HTTP/1.1\r\nHost: agentstream\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n"
	if auth != "" {
		head += "Authorization: Bearer " + auth + "\r\n"
	}
	if _, err := io.WriteString(conn, head+"\r\n{"); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte(" ")); err != nil {
				return // the server closed the connection
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	return conn
}

// answer reads the response on conn, then reads on to make sure the
// server closes the connection; it returns the status, the error code of
// the body and how long the answer took.
func answer(t *testing.T, conn net.Conn) (int, agentstream.Code, time.Duration) {
	t.Helper()
	began := time.Now()
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	took := time.Since(began)
	var body struct {
		Error agentstream.ErrorInfo `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("status %d, body: %v", resp.StatusCode, err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the server kept the connection open after its answer")
		}
		if !isReset(err) {
			t.Fatalf("after the answer: %v", err)
		}
	}
	return resp.StatusCode, body.Error.Code, took
}

// TestSlowBody: a request whose body trickles in is answered 401 at once
// when it lacks a credential (the body is never waited for), and 408 after
// http.body_timeout when it has one; either way the connection is closed.
// A stream that lasts longer than the body timeout is not cut by it.
func TestSlowBody(t *testing.T) {
	t.Parallel()
	t.Run("unauthenticated", func(t *testing.T) {
		t.Parallel()
		// A long body timeout: the 401 must not wait for it.
		e := start(t, sim.Options{}, func(c *config.Config) {
			c.Auth.Keys = []config.APIKey{{Key: testKey, User: "u1"}}
			c.HTTP.BodyTimeout = 10 * time.Minute
		})
		addr := strings.TrimPrefix(e.url, "http://")
		for _, tc := range []struct {
			method, path, auth string
			status             int
		}{
			{"POST", "/v1/chat", "", http.StatusUnauthorized},
			{"POST", "/v1/threads", "not-a-key", http.StatusUnauthorized},
			{"PUT", "/v1/chat", "", http.StatusMethodNotAllowed},
			{"POST", "/v2/nothing", "", http.StatusNotFound},
		} {
			status, _, _ := answer(t, trickle(t, addr, tc.method, tc.path, tc.auth))
			if status != tc.status {
				t.Fatalf("%s %s: status %d, want %d", tc.method, tc.path, status, tc.status)
			}
		}
	})
	t.Run("authenticated", func(t *testing.T) {
		t.Parallel()
		const timeout = 500 * time.Millisecond
		e := start(t, sim.Options{}, func(c *config.Config) {
			c.Auth.Keys = []config.APIKey{{Key: testKey, User: "u1"}}
			c.HTTP.BodyTimeout = timeout
		})
		addr := strings.TrimPrefix(e.url, "http://")
		for _, path := range []string{"/v1/chat", "/v1/threads"} {
			status, code, took := answer(t, trickle(t, addr, "POST", path, testKey))
			if status != http.StatusRequestTimeout || code != httpapi.CodeRequestTimeout {
				t.Fatalf("POST %s: status %d, code %s; want 408, %s", path, status, code, httpapi.CodeRequestTimeout)
			}
			if took < timeout*9/10 {
				t.Fatalf("POST %s: answered after %s, before the body timeout (%s)", path, took, timeout)
			}
		}
	})
	t.Run("streams outlast it", func(t *testing.T) {
		t.Parallel()
		// Each run streams for about a second, twice the body timeout.
		e := start(t, sim.Options{Tokens: 100, Pace: 10 * time.Millisecond}, func(c *config.Config) {
			c.HTTP.BodyTimeout = 500 * time.Millisecond
		})
		th := e.newThread(`{}`)
		_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "hi"}`)
		if n := checkNative(t, evs); n.end.Status != agentstream.RunCompleted {
			t.Fatalf("the run ended %+v", n.end)
		}
		_, evs = e.stream("POST", "/v1/chat", `{"query": "hi"}`)
		if c := seedChunks(t, evs); c[len(c)-2]["complete"] != true {
			t.Fatalf("the chat ended %v", c[len(c)-2])
		}
		// A reader whose GET has a body (it is read and ignored).
		r, resp := e.openStream(context.Background(), "POST", "/v1/threads/"+th.ID+"/runs", `{"input": "again"}`, nil)
		readN(t, r, 1)
		_, evs = e.stream("GET", "/v1/runs/"+resp.Header.Get("X-Run-Id")+"/events", `{"ignored": true}`)
		if n := checkNative(t, evs); n.end.Status != agentstream.RunCompleted {
			t.Fatalf("the run read with a body ended %+v", n.end)
		}
	})
}
