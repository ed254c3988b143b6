package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/agentstream/agentstream"
)

// runTools are the tools of one run: the agent's own and those its tool
// sources had when the run started, by name, with their specs in the
// order the model is told of them.
type runTools struct {
	byName map[string]agentstream.Tool
	specs  []agentstream.ToolSpec
}

// toolsFor gathers the tools of a run of ca. A tool source's tool named
// like one gathered before is left out, with a log line: names are the
// model's only way to say which tool it calls.
func (r *Runner) toolsFor(ctx context.Context, ca *compiledAgent) runTools {
	rt := runTools{byName: make(map[string]agentstream.Tool, len(ca.tools))}
	add := func(t agentstream.Tool, from string) {
		spec := t.Spec()
		if _, dup := rt.byName[spec.Name]; dup {
			r.logger.Warn("a tool is named like another tool of the agent; it is left out", "agent", ca.Name, "tool", spec.Name, "source", from)
			return
		}
		rt.byName[spec.Name] = t
		rt.specs = append(rt.specs, spec)
	}
	for _, t := range ca.tools {
		add(t, "tools")
	}
	for _, src := range ca.sources {
		ts, err := src.Tools(ctx)
		if err != nil {
			r.logger.Warn("a tool source's tools could not be listed; the run goes on without them", "agent", ca.Name, "source", src.Name(), "err", err)
			continue
		}
		for _, t := range ts {
			add(t, src.Name())
		}
	}
	return rt
}

// schemaCache keeps the compiled argument schema of each tool spec, by
// its JSON text: a schema is compiled once, not at every call. It holds
// at most maxSchemas (tool sources can change their tools without end);
// past that it starts afresh.
type schemaCache struct {
	mu sync.Mutex
	m  map[string]*compiledSchema
}

// maxSchemas bounds the schemas a schemaCache holds.
const maxSchemas = 1024

type compiledSchema struct {
	resolved *jsonschema.Resolved
	err      error
}

func newSchemaCache() *schemaCache { return &schemaCache{m: map[string]*compiledSchema{}} }

// get compiles params, or returns it compiled before. An empty schema
// accepts any arguments object.
func (c *schemaCache) get(params json.RawMessage) *compiledSchema {
	key := string(params)
	c.mu.Lock()
	cs, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return cs
	}
	cs = &compiledSchema{}
	if len(params) > 0 {
		var s jsonschema.Schema
		if err := json.Unmarshal(params, &s); err != nil {
			cs.err = fmt.Errorf("the tool's parameters are not a JSON Schema: %w", err)
		} else if cs.resolved, err = s.Resolve(nil); err != nil {
			cs.err = fmt.Errorf("the tool's parameters are not a usable JSON Schema: %w", err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxSchemas {
		clear(c.m)
	}
	c.m[key] = cs
	return cs
}

// checkArguments validates a call's arguments (valid JSON already) against
// the tool's schema. The error says what is wrong, for the model to
// correct itself.
func (r *Runner) checkArguments(spec agentstream.ToolSpec, args json.RawMessage) error {
	cs := r.schemas.get(spec.Parameters)
	if cs.err != nil {
		return cs.err
	}
	if cs.resolved == nil {
		return nil
	}
	var v any
	if err := json.Unmarshal(args, &v); err != nil {
		return fmt.Errorf("the arguments are not valid JSON: %w", err)
	}
	if err := cs.resolved.Validate(v); err != nil {
		msg := fmt.Sprintf("the arguments do not match the tool's parameters: %s", strings.TrimPrefix(err.Error(), "validating root: "))
		// The schema itself, when short, tells the model what to send.
		if len(spec.Parameters) <= maxSchemaInError {
			msg += "; the parameters' JSON Schema is " + string(spec.Parameters)
		}
		return errors.New(msg)
	}
	return nil
}

// timeoutOf is the bound of a call of t: its own, or the runner's.
func (r *Runner) timeoutOf(t agentstream.Tool) time.Duration {
	if tt, ok := t.(agentstream.TimedTool); ok {
		if d := tt.Timeout(); d > 0 {
			return d
		}
	}
	return r.cfg.ToolTimeout
}

// maxSchemaInError is the longest schema quoted in an argument error.
const maxSchemaInError = 2 << 10

var errToolStopped = errors.New("the run was stopped while the tool ran")
