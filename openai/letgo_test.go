package openai

import (
	"context"
	"net/http/httptest"
	"runtime"
	"testing"
	"weak"

	"github.com/agentstream/agentstream"
)

// TestRequestLetGo: once the request is sent, the model holds nothing of
// it while the answer streams: an open stream does not keep the
// conversation it was asked about.
func TestRequestLetGo(t *testing.T) {
	srv := httptest.NewServer(streamAll(textChunk("a"), textChunk("b"), finishChunk("stop")))
	defer srv.Close()
	m := newModel(t, srv.URL, nil)
	req, msgs := weakRequest()
	held := false
	res, err := m.Stream(context.Background(), req, func(agentstream.ModelDelta) {
		runtime.GC()
		held = held || msgs.Value() != nil
	})
	if err != nil || res.Content != "ab" {
		t.Fatalf("res %+v, err %v", res, err)
	}
	if held {
		t.Error("the request's messages are held while the answer streams")
	}
}

// weakRequest returns a request and a weak pointer to its messages. It is
// not inlined so that its caller's frame holds nothing of the request but
// the argument it passes on.
//
//go:noinline
func weakRequest() (agentstream.ModelRequest, weak.Pointer[agentstream.Message]) {
	msgs := []agentstream.Message{{Role: agentstream.RoleSystem, Content: "be brief"}, {Role: agentstream.RoleUser, Content: "hi"}}
	return agentstream.ModelRequest{Model: "test-model", Messages: msgs}, weak.Make(&msgs[0])
}
