package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/server"
	"github.com/agentstream/agentstream/tools"
)

// TestSimParallelToolCalls: a message naming two tools gets both called
// in one model turn, in flight at the same time (each waits for the
// other to start), and their results reach the model in the model's
// order although the second ends first.
func TestSimParallelToolCalls(t *testing.T) {
	t.Parallel()
	model := fastSim(t)
	stockStarted, quoteStarted, quoteDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	wait := func(ctx context.Context, ch chan struct{}, what string) error {
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return errors.New(what + " did not happen before the call's timeout")
		}
	}
	stock := tools.NewFunc("stock_level", "Units in stock.", `{"type":"object","properties":{"sku":{"type":"string","examples":["SKU-1"]}},"required":["sku"]}`,
		func(ctx context.Context, args json.RawMessage) (string, error) {
			close(stockStarted)
			if err := wait(ctx, quoteStarted, "shipping_quote's start"); err != nil {
				return "", err
			}
			// Ends after the other, so the order of results is the model's.
			if err := wait(ctx, quoteDone, "shipping_quote's end"); err != nil {
				return "", err
			}
			return "12 units of " + gjson(args, "sku"), nil
		})
	quote := tools.NewFunc("shipping_quote", "Shipping price.", `{"type":"object","properties":{"weight_kg":{"type":"number","minimum":0.5}},"required":["weight_kg"]}`,
		func(ctx context.Context, args json.RawMessage) (string, error) {
			close(quoteStarted)
			defer close(quoteDone)
			if err := wait(ctx, stockStarted, "stock_level's start"); err != nil {
				return "", err
			}
			return "4.90 EUR for " + gjson(args, "weight_kg") + " kg", nil
		})
	cfg := embedConfig(t, model.URL(), agentstream.Agent{Name: "shop", Tools: []string{"stock_level", "shipping_quote"}, MaxTurns: 3})
	cfg.Runs.ToolTimeout = time.Minute
	e := startEmbedded(t, cfg, nil, server.WithTools(stock, quote))
	e.sim = model.Server()

	th := e.newThread(`{"agent": "shop"}`)
	_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "Check stock_level and shipping_quote, please."}`)
	n := checkNative(t, evs)
	if n.end.Status != agentstream.RunCompleted || len(n.toolCalls) != 2 || len(n.results) != 2 {
		t.Fatalf("run %+v, calls %+v, results %+v", n.end, n.toolCalls, n.results)
	}
	if n.toolCalls[0].Name != "stock_level" || string(n.toolCalls[0].Arguments) != `{"sku":"SKU-1"}` ||
		n.toolCalls[1].Name != "shipping_quote" || string(n.toolCalls[1].Arguments) != `{"weight_kg":1}` {
		t.Fatalf("tool calls %+v", n.toolCalls)
	}
	for _, r := range n.results {
		if r.IsError {
			t.Fatalf("result %+v", r)
		}
	}
	// Both calls started before either ended, and before the second turn.
	var calls, firstResult, firstDelta []int
	for i, ev := range evs {
		switch ev.Type {
		case "tool.call":
			calls = append(calls, i)
		case "tool.result":
			firstResult = append(firstResult, i)
		case "message.delta":
			firstDelta = append(firstDelta, i)
		}
	}
	if len(calls) != 2 || len(firstResult) != 2 || len(firstDelta) == 0 || calls[1] > firstResult[0] || firstResult[1] > firstDelta[0] {
		t.Fatalf("tool.call at %v, tool.result at %v, message.delta at %v: want both calls, then both results, then the answer", calls, firstResult, firstDelta)
	}
	// (Which tool.result comes first in the stream is a race between the
	// two calls' ends: only the model's order is promised, checked next.)
	// The model got the results in its calls' order, and answered.
	reqs := e.sim.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d model requests, want 2", len(reqs))
	}
	second := reqs[1].Messages
	asst, r1, r2 := second[len(second)-3], second[len(second)-2], second[len(second)-1]
	if len(asst.ToolCalls) != 2 || r1.ToolCallID != asst.ToolCalls[0].ID || r2.ToolCallID != asst.ToolCalls[1].ID ||
		r1.Content != "12 units of SKU-1" || r2.Content != "4.90 EUR for 1 kg" {
		t.Fatalf("model input after the tools: %+v", second)
	}
	want := "[simulated] The tool stock_level returned: 12 units of SKU-1. The tool shipping_quote returned: 4.90 EUR for 1 kg."
	if n.text != want {
		t.Fatalf("answer %q, want %q", n.text, want)
	}
	msgs := e.messages(th.ID)
	if len(msgs) != 5 || len(msgs[1].ToolCalls) != 2 || msgs[2].ToolName != "stock_level" || msgs[3].ToolName != "shipping_quote" || msgs[4].Content != want {
		t.Fatalf("stored messages %+v", msgs)
	}
}

// gjson is a top-level field of a JSON object, as text.
func gjson(args json.RawMessage, key string) string {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(args, &m) // the runner validated the arguments
	return strings.Trim(string(m[key]), `"`)
}

// TestSimWrongArgumentsCorrected: "wrong arguments" makes the simulator
// call a tool with arguments its schema refuses; the runner answers with a
// tool error that says what is wrong, without calling the tool; the
// simulator tries again with right ones, which succeed, and answers.
func TestSimWrongArgumentsCorrected(t *testing.T) {
	t.Parallel()
	model := fastSim(t)
	var called atomic.Int32
	inner := orderStatus()
	counted := tools.NewFunc("order_status", inner.Spec().Description, string(inner.Spec().Parameters),
		func(ctx context.Context, args json.RawMessage) (string, error) {
			called.Add(1)
			return inner.Call(ctx, args)
		})
	cfg := embedConfig(t, model.URL(), agentstream.Agent{Name: "shop", Tools: []string{"order_status"}})
	e := startEmbedded(t, cfg, nil, server.WithTools(counted))
	e.sim = model.Server()

	th := e.newThread(`{"agent": "shop"}`)
	_, evs := e.stream("POST", "/v1/threads/"+th.ID+"/runs", `{"input": "Look up my order_status, with wrong arguments."}`)
	n := checkNative(t, evs)
	if n.end.Status != agentstream.RunCompleted || len(n.toolCalls) != 2 || len(n.results) != 2 {
		t.Fatalf("run %+v, calls %+v, results %+v", n.end, n.toolCalls, n.results)
	}
	if c := n.toolCalls[0]; string(c.Arguments) != `{"order_id":12345}` {
		t.Fatalf("first call %+v", c)
	}
	if r := n.results[0]; !r.IsError || !strings.Contains(r.Output, "do not match the tool's parameters") || !strings.Contains(r.Output, "order_id") {
		t.Fatalf("first result %+v: want a validation error naming order_id", r)
	}
	if c := n.toolCalls[1]; string(c.Arguments) != `{"order_id":"A-1001"}` {
		t.Fatalf("second call %+v", c)
	}
	if r := n.results[1]; r.IsError || !strings.Contains(r.Output, `"status":"shipped"`) {
		t.Fatalf("second result %+v", r)
	}
	if called.Load() != 1 {
		t.Fatalf("the tool was called %d times; the wrong arguments must not reach it", called.Load())
	}
	if want := "[simulated] The tool order_status returned: " + n.results[1].Output + "."; n.text != want {
		t.Fatalf("answer %q, want %q", n.text, want)
	}
	msgs := e.messages(th.ID)
	roles := make([]string, len(msgs))
	for i, m := range msgs {
		roles[i] = string(m.Role)
	}
	if strings.Join(roles, ",") != "user,assistant,tool,assistant,tool,assistant" ||
		msgs[2].Content != n.results[0].Output || msgs[4].Content != n.results[1].Output || msgs[5].Content != n.text {
		t.Fatalf("stored messages %+v", msgs)
	}
	if len(e.sim.Requests()) != 3 {
		t.Fatalf("%d model requests, want 3", len(e.sim.Requests()))
	}
}
