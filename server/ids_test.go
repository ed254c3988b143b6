package server_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // the sqlite driver, to count rows beside the server

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/config"
	"github.com/agentstream/agentstream/internal/sse"
	"github.com/agentstream/agentstream/internal/testenv"
	"github.com/agentstream/agentstream/sim"
)

// Keys of the users of these tests.
const (
	aliceKey   = "alice-key-0123456789"
	bobKey     = "bob-key-0123456789ab"
	malloryKey = "mallory-key-01234567"
)

// storeEnv is a server with API keys on one store, and a way to count
// the rows the store holds, read beside the server.
type storeEnv struct {
	*env
	count func(table string) int
}

// onEachStore runs fn on a server on SQLite, then on one on PostgreSQL
// (skipped without a test database).
func onEachStore(t *testing.T, fn func(t *testing.T, e *storeEnv)) {
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var dbURL string
			var count func(string) int
			if name == "postgres" {
				_, dbURL = testenv.PostgresSchema(t)
				count = func(table string) int {
					conn, err := pgx.Connect(t.Context(), dbURL)
					if err != nil {
						t.Fatal(err)
					}
					defer func() { _ = conn.Close(context.Background()) }()
					var n int
					if err := conn.QueryRow(t.Context(), "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
						t.Fatal(err)
					}
					return n
				}
			} else {
				dbURL = filepath.Join(t.TempDir(), "agentstream.db")
				count = func(table string) int {
					db, err := sql.Open("sqlite", "file:"+dbURL+"?mode=ro")
					if err != nil {
						t.Fatal(err)
					}
					defer func() { _ = db.Close() }()
					var n int
					if err := db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
						t.Fatal(err)
					}
					return n
				}
			}
			e := start(t, sim.Options{Tokens: 3}, func(c *config.Config) {
				c.DatabaseURL = dbURL
				c.Auth.Keys = []config.APIKey{{Key: aliceKey, User: "alice"}, {Key: bobKey, User: "bob"}, {Key: malloryKey, User: "mallory"}}
			})
			fn(t, &storeEnv{env: e, count: count})
		})
	}
}

// as sends a request as the user of key; the body is closed at cleanup.
func (e *storeEnv) as(key, method, path, body string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	e.t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// chat asks a question as key's user and returns the final chunk's
// thread_id and X-Thread-Id.
func (e *storeEnv) chat(key, body string) (chunkThread, header string) {
	e.t.Helper()
	resp := e.as(key, "POST", "/v1/chat", body)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("chat %s: status %d: %s", body, resp.StatusCode, b)
	}
	var evs []sse.Event
	r := sse.NewReader(resp.Body)
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			e.t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	chunks := seedChunks(e.t, evs)
	final := chunks[len(chunks)-2]
	if final["complete"] != true {
		e.t.Fatalf("chat %s: %v", body, chunks)
	}
	id, _ := final["thread_id"].(string)
	return id, resp.Header.Get("X-Thread-Id")
}

// getJSON answers a GET as key's user, decoded into out, after checking
// the status.
func (e *storeEnv) getJSON(key, path string, want int, out any) {
	e.t.Helper()
	resp := e.as(key, "GET", path, "")
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		e.t.Fatalf("GET %s: status %d, want %d: %s", path, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("GET %s: %s: %v", path, b, err)
		}
	}
}

// questions lists the user messages of key's user's thread id.
func (e *storeEnv) questions(key, id string) []string {
	e.t.Helper()
	var out struct {
		Data []agentstream.Message `json:"data"`
	}
	e.getJSON(key, "/v1/threads/"+id+"/messages", http.StatusOK, &out)
	var qs []string
	for _, m := range out.Data {
		if m.Role == agentstream.RoleUser {
			qs = append(qs, m.Content)
		}
	}
	return qs
}

// TestClientThreadIDsPerUser: a thread id a client chooses belongs to its
// user. Two users each have a thread "hana-1" and see only their own; one
// who claimed the id first blocks nobody; the id comes back as chosen
// (chunks, X-Thread-Id, GET); server-made ids keep working verbatim.
func TestClientThreadIDsPerUser(t *testing.T) {
	t.Parallel()
	onEachStore(t, func(t *testing.T, e *storeEnv) {
		// Mallory claims alice's predictable id first.
		if id, h := e.chat(malloryKey, `{"query": "mallory was here", "thread_id": "hana-1"}`); id != "hana-1" || h != "hana-1" {
			t.Fatalf("mallory's chat: chunk thread_id %q, X-Thread-Id %q", id, h)
		}
		for _, u := range []struct{ key, name string }{{aliceKey, "alice"}, {bobKey, "bob"}} {
			for i, q := range []string{u.name + " asks", u.name + " asks again"} {
				id, h := e.chat(u.key, `{"query": "`+q+`", "thread_id": "hana-1"}`)
				if id != "hana-1" || h != "hana-1" {
					t.Fatalf("%s's chat %d: chunk thread_id %q, X-Thread-Id %q; want hana-1", u.name, i, id, h)
				}
			}
		}
		for _, u := range []struct {
			key, name string
			want      string
		}{
			{aliceKey, "alice", "alice asks|alice asks again"},
			{bobKey, "bob", "bob asks|bob asks again"},
			{malloryKey, "mallory", "mallory was here"},
		} {
			var th map[string]any
			e.getJSON(u.key, "/v1/threads/hana-1", http.StatusOK, &th)
			if th["id"] != "hana-1" || th["user_id"] != u.name {
				t.Fatalf("%s's GET /v1/threads/hana-1: %v", u.name, th)
			}
			if got := strings.Join(e.questions(u.key, "hana-1"), "|"); got != u.want {
				t.Fatalf("%s's thread hana-1 holds %q, want %q", u.name, got, u.want)
			}
		}

		// A native run on the chosen id, as its owner.
		resp, evs := e.streamAs(aliceKey, "/v1/threads/hana-1/runs", `{"input": "alice runs natively"}`)
		if h := resp.Header.Get("X-Thread-Id"); h != "hana-1" {
			t.Fatalf("native run X-Thread-Id %q", h)
		}
		run := checkNative(t, evs)
		if run.end.Status != agentstream.RunCompleted {
			t.Fatalf("native run ended %+v", run.end)
		}
		if got := e.questions(aliceKey, "hana-1"); len(got) != 3 || got[2] != "alice runs natively" {
			t.Fatalf("alice's questions %q", got)
		}
		// The run names the thread by its key, which paths take too.
		var r agentstream.Run
		e.getJSON(aliceKey, "/v1/runs/"+run.runID, http.StatusOK, &r)
		if r.ThreadID != agentstream.ThreadKey("alice", "hana-1") {
			t.Fatalf("run thread_id %q, want alice's key of hana-1", r.ThreadID)
		}
		var byKey map[string]any
		e.getJSON(aliceKey, "/v1/threads/"+r.ThreadID, http.StatusOK, &byKey)
		if byKey["id"] != "hana-1" {
			t.Fatalf("GET by key: %v", byKey)
		}
		e.getJSON(bobKey, "/v1/threads/"+r.ThreadID, http.StatusNotFound, nil)

		// A server-made id, sent back verbatim as the seed client does.
		made, h := e.chat(aliceKey, `{"query": "no id"}`)
		if !strings.HasPrefix(made, "thr_") || h != made {
			t.Fatalf("server-made thread: chunk %q, header %q", made, h)
		}
		if id, h := e.chat(aliceKey, `{"query": "with its id", "thread_id": "`+made+`"}`); id != made || h != made {
			t.Fatalf("chat on a server-made id: chunk %q, header %q", id, h)
		}
		var th map[string]any
		e.getJSON(aliceKey, "/v1/threads/"+made, http.StatusOK, &th)
		if th["id"] != made {
			t.Fatalf("GET server-made thread: %v", th)
		}
		// Bob naming alice's thread gets a thread of his own by that name.
		if id, _ := e.chat(bobKey, `{"query": "bob on alice's id", "thread_id": "`+made+`"}`); id != made {
			t.Fatalf("bob's chat on alice's server-made id: %q", id)
		}
		if got := strings.Join(e.questions(aliceKey, made), "|"); got != "no id|with its id" {
			t.Fatalf("alice's server-made thread holds %q", got)
		}
		if got := strings.Join(e.questions(bobKey, made), "|"); got != "bob on alice's id" {
			t.Fatalf("bob's thread of that name holds %q", got)
		}
		// hana-1 thrice, alice's server-made thread and bob's of that name.
		if n := e.count("threads"); n != 5 {
			t.Fatalf("%d threads stored, want 5", n)
		}
	})
}

// streamAs reads a whole native stream started as key's user.
func (e *storeEnv) streamAs(key, path, body string) (*http.Response, []sse.Event) {
	e.t.Helper()
	resp := e.as(key, "POST", path, body)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("POST %s: status %d: %s", path, resp.StatusCode, b)
	}
	var evs []sse.Event
	r := sse.NewReader(resp.Body)
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return resp, evs
		}
		if err != nil {
			e.t.Fatal(err)
		}
		evs = append(evs, ev)
	}
}

// TestHostileInput: ids and text that no store keeps, or that one store
// would keep and the other refuse, are refused the same on both stores,
// before anything is written; path ids no thread or run can have are 404.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 3000)
	onEachStore(t, func(t *testing.T, e *storeEnv) {
		var th agentstream.Thread
		resp := e.as(aliceKey, "POST", "/v1/threads", `{}`)
		if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&th) != nil {
			t.Fatalf("create thread: %d", resp.StatusCode)
		}
		runs := "/v1/threads/" + th.ID + "/runs"
		tests := []struct {
			name, method, path, body string
			status                   int
			want                     string // in the error message
		}{
			{"chat id of 3000 bytes", "POST", "/v1/chat", `{"query": "hi", "thread_id": "` + long + `"}`, 400, `"thread_id" must be 1 to 128 characters`},
			{"chat id of 129 bytes", "POST", "/v1/chat", `{"query": "hi", "thread_id": "` + long[:129] + `"}`, 400, `"thread_id" must be`},
			{"chat id with NUL", "POST", "/v1/chat", `{"query": "hi", "thread_id": "a\u0000b"}`, 400, `field "thread_id" holds a NUL`},
			{"chat id with a lone surrogate", "POST", "/v1/chat", `{"query": "hi", "thread_id": "\ud800"}`, 400, `field "thread_id" holds \ud800`},
			{"chat id with spaces", "POST", "/v1/chat", `{"query": "hi", "thread_id": "hana 1"}`, 400, `"thread_id" must be`},
			{"chat id with ../", "POST", "/v1/chat", `{"query": "hi", "thread_id": "../etc/passwd"}`, 400, `"thread_id" must be`},
			{"chat id ..", "POST", "/v1/chat", `{"query": "hi", "thread_id": ".."}`, 400, `"thread_id" must be`},
			{"chat id with a slash", "POST", "/v1/chat", `{"query": "hi", "thread_id": "a/b"}`, 400, `"thread_id" must be`},
			{"chat id with invalid UTF-8", "POST", "/v1/chat", "{\"query\": \"hi\", \"thread_id\": \"a\xffb\"}", 400, `field "thread_id" is not valid UTF-8`},
			{"chat NUL in query", "POST", "/v1/chat", `{"query": "hi\u0000", "thread_id": "ok-1"}`, 400, `field "query" holds a NUL`},
			{"chat NUL in a context key", "POST", "/v1/chat", `{"query": "hi", "thread_id": "ok-2", "baby\u0000": "x"}`, 400, `a field name holds a NUL`},
			{"chat NUL in a context value", "POST", "/v1/chat", `{"query": "hi", "thread_id": "ok-3", "baby_name": ["\u0000"]}`, 400, `field "baby_name[0]" holds a NUL`},
			{"chat lone surrogate in query", "POST", "/v1/chat", `{"query": "\udc00", "thread_id": "ok-4"}`, 400, `field "query" holds \udc00`},
			{"chat invalid UTF-8 in query", "POST", "/v1/chat", "{\"query\": \"\xc3\", \"thread_id\": \"ok-5\"}", 400, `field "query" is not valid UTF-8`},
			{"chat null", "POST", "/v1/chat", `null`, 400, "must be a JSON object, not null"},
			{"chat array", "POST", "/v1/chat", `[{"query": "hi"}]`, 400, "must be a JSON object"},
			{"thread null", "POST", "/v1/threads", `null`, 400, "must be a JSON object, not null"},
			{"thread string", "POST", "/v1/threads", `"x"`, 400, "must be a JSON object"},
			{"thread NUL title", "POST", "/v1/threads", `{"title": "a\u0000"}`, 400, `field "title" holds a NUL`},
			{"thread surrogate title", "POST", "/v1/threads", `{"title": "\ud800"}`, 400, `field "title" holds \ud800`},
			{"thread NUL metadata key", "POST", "/v1/threads", `{"metadata": {"k\u0000": 1}}`, 400, `a key in field "metadata" holds a NUL`},
			{"thread NUL context value", "POST", "/v1/threads", `{"context": {"baby_name": "\u0000"}}`, 400, `field "context.baby_name" holds a NUL`},
			{"thread NUL agent", "POST", "/v1/threads", `{"agent": "tester\u0000"}`, 400, `field "agent" holds a NUL`},
			{"run null", "POST", runs, `null`, 400, "must be a JSON object, not null"},
			{"run NUL input", "POST", runs, `{"input": "\u0000"}`, 400, `field "input" holds a NUL`},
			{"run invalid UTF-8 input", "POST", runs, "{\"input\": \"\xff\"}", 400, `field "input" is not valid UTF-8`},
			{"run NUL context", "POST", runs, `{"input": "hi", "context": {"\u0000": 1}}`, 400, `a key in field "context" holds a NUL`},
			{"GET thread id of 3000 bytes", "GET", "/v1/threads/" + long, "", 404, "not found"},
			{"GET thread id with NUL", "GET", "/v1/threads/a%00b", "", 404, "not found"},
			{"GET thread id with invalid UTF-8", "GET", "/v1/threads/a%FFb", "", 404, "not found"},
			{"GET thread id with spaces", "GET", "/v1/threads/hana%201", "", 404, "not found"},
			{"GET thread id with ../", "GET", "/v1/threads/..%2F" + th.ID, "", 404, "not found"},
			{"GET messages id with NUL", "GET", "/v1/threads/%00/messages", "", 404, "not found"},
			{"run on id of 3000 bytes", "POST", "/v1/threads/" + long + "/runs", `{"input": "hi"}`, 404, "not found"},
			{"run on id with invalid UTF-8", "POST", "/v1/threads/%ED%A0%80/runs", `{"input": "hi"}`, 404, "not found"},
			{"GET run id with NUL", "GET", "/v1/runs/run_%00", "", 404, "not found"},
			{"GET run id of 3000 bytes", "GET", "/v1/runs/" + long, "", 404, "not found"},
			{"events of run id with invalid UTF-8", "GET", "/v1/runs/%FF/events", "", 404, "not found"},
			{"cancel run id with NUL", "POST", "/v1/runs/%00/cancel", "", 404, "not found"},
		}
		for _, tt := range tests {
			resp := e.as(aliceKey, tt.method, tt.path, tt.body)
			if resp.StatusCode != tt.status {
				b, _ := io.ReadAll(resp.Body)
				t.Errorf("%s: status %d, want %d: %s", tt.name, resp.StatusCode, tt.status, b)
				continue
			}
			if eb := errorBody(t, resp); !strings.Contains(eb.Message, tt.want) {
				t.Errorf("%s: error %+v, want a message with %q", tt.name, eb, tt.want)
			}
		}
		// Nothing was written: the store holds the one thread made above,
		// no run and no message, and the model was never called.
		if n := e.count("threads"); n != 1 {
			t.Errorf("%d threads stored, want 1", n)
		}
		if n, m := e.count("runs"), e.count("messages"); n != 0 || m != 0 {
			t.Errorf("%d runs and %d messages stored, want none", n, m)
		}
		if n := len(e.sim.Requests()); n != 0 {
			t.Errorf("hostile input reached the model %d times", n)
		}
		// The longest id a client may choose works.
		max := strings.Repeat("m", 128)
		if id, h := e.chat(aliceKey, `{"query": "hi", "thread_id": "`+max+`"}`); id != max || h != max {
			t.Fatalf("the longest id: chunk %q, header %q", id, h)
		}
	})
}
