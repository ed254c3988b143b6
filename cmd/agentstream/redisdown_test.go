package main

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
)

// TestRedisDownAroundNewRun: a run asked for while Redis is down is refused
// with 503, never streamed with a log missing its head (it used to answer
// 200 with only ": ok", then store the run and give its events ids 1… from
// the middle of the answer); its question stays saved, the run ended
// failed, the thread free. Once Redis is back, a run on the same thread
// streams whole, ids 1, 2, 3… from run.created, and reads back the same.
func TestRedisDownAroundNewRun(t *testing.T) {
	t.Parallel()
	redis := startPrivateRedis(t)
	procs, _ := startCluster(t, 1, redis.url(), "")
	a := procs[0]
	th := a.newThread()
	bin := redis.cmd.Path
	redis.stop()

	resp := a.do("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "`+longQuestion+`"}`)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	var e struct {
		Error agentstream.ErrorInfo `json:"error"`
	}
	if resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(body, &e) != nil || e.Error.Code != agentstream.CodeUnavailable {
		t.Fatalf("a run with Redis down: %d %s; want 503 unavailable", resp.StatusCode, body)
	}
	msgs := a.messages(th.ID)
	if len(msgs) != 1 || msgs[0].Role != agentstream.RoleUser {
		t.Fatalf("after the refusal the thread holds %+v; want the question", msgs)
	}
	if run := a.getRun(msgs[0].RunID); run.Status != agentstream.RunFailed || run.Error == nil || run.Error.Code != agentstream.CodeUnavailable {
		t.Fatalf("the refused run: %+v; want failed, unavailable", run)
	}

	redis.start(bin)
	a.waitReady(15 * time.Second)
	s := a.openStream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "short"}`, nil)
	ev, end := s.readToEnd() // checks ids 1, 2, 3… and one terminal event
	if end.Status != agentstream.RunCompleted || s.events[0].ID != "1" || s.events[0].Type != string(agentstream.EventRunCreated) {
		t.Fatalf("the run after Redis came back: first %s at id %s, ended %s %+v", s.events[0].Type, s.events[0].ID, ev.Type, end)
	}
	again := a.openStream("GET", "/v1/runs/"+s.runID+"/events", "", nil)
	again.runID = s.runID
	again.readToEnd()
	if len(again.events) != len(s.events) {
		t.Fatalf("read back: %d events, streamed %d", len(again.events), len(s.events))
	}
	for i := range s.events {
		if again.events[i] != s.events[i] {
			t.Fatalf("event %d read back as %+v, streamed as %+v", i, again.events[i], s.events[i])
		}
	}
}
