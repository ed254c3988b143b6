// Package tools holds agentstream's built-in tools and the registry agents
// pick their tools from.
package tools

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/agentstream/agentstream"
)

// Func is a Tool made of a spec and a function.
type Func struct {
	spec agentstream.ToolSpec
	fn   func(ctx context.Context, args json.RawMessage) (string, error)
}

var _ agentstream.Tool = (*Func)(nil)

// NewFunc returns a tool that calls fn: how a Go program embedding
// agentstream writes its own tools (server.WithTools, docs/embedding.md).
// parameters is the JSON Schema of the arguments object, which the runner
// checks the model's arguments against before fn is called (an empty
// schema accepts any object). fn may be called concurrently; ctx carries
// the run (agentstream.RunInfoFrom) and ends when the call's timeout
// passes or the run stops. Its output is what the model reads; an error
// is reported to the model as the tool's output ("error: …") and never
// fails the run.
func NewFunc(name, description, parameters string, fn func(ctx context.Context, args json.RawMessage) (string, error)) *Func {
	return &Func{
		spec: agentstream.ToolSpec{Name: name, Description: description, Parameters: json.RawMessage(parameters)},
		fn:   fn,
	}
}

// Spec implements agentstream.Tool.
func (f *Func) Spec() agentstream.ToolSpec { return f.spec }

// Call implements agentstream.Tool.
func (f *Func) Call(ctx context.Context, args json.RawMessage) (string, error) {
	return f.fn(ctx, args)
}

// Registry maps tool names to tools.
type Registry map[string]agentstream.Tool

// Add registers tools under their spec names; a name registered twice is an error.
func (r Registry) Add(ts ...agentstream.Tool) error {
	for _, t := range ts {
		name := t.Spec().Name
		if _, dup := r[name]; dup {
			return fmt.Errorf("tool %q is registered twice", name)
		}
		r[name] = t
	}
	return nil
}

// Names returns the registered names, sorted.
func (r Registry) Names() []string {
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Builtins returns a registry of the built-in tools.
func Builtins(clock func() time.Time) Registry {
	r := Registry{}
	// Built-in names are distinct, so Add cannot fail here.
	_ = r.Add(CurrentTime(clock), DueDate(clock))
	return r
}

// decodeArgs decodes a tool's arguments object strictly, so a model that
// misspells a field hears about it.
func decodeArgs(args json.RawMessage, v any) error {
	if len(args) == 0 {
		args = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid arguments: %w", err)
	}
	return nil
}
