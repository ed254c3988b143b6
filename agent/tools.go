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
// sources had when the run started, with their specs in the order the
// model is told of them. They are held for the whole run: a few tools are
// found by name in specs, without a map (hundreds of bytes per open
// stream, BenchmarkStreamMemory in ../server); many, in byName.
type runTools struct {
	tools  []agentstream.Tool
	specs  []agentstream.ToolSpec // specs[i] is tools[i]'s
	byName map[string]int         // nil for up to mapTools tools
}

// mapTools is the most tools a run finds by a scan of their names.
const mapTools = 16

// find returns the tool named name.
func (rt *runTools) find(name string) (agentstream.Tool, bool) {
	if rt.byName != nil {
		i, ok := rt.byName[name]
		if !ok {
			return nil, false
		}
		return rt.tools[i], true
	}
	for i := range rt.specs {
		if rt.specs[i].Name == name {
			return rt.tools[i], true
		}
	}
	return nil, false
}

// add adds t, unless a tool of that name is there (then false).
func (rt *runTools) add(t agentstream.Tool, spec agentstream.ToolSpec) bool {
	if _, dup := rt.find(spec.Name); dup {
		return false
	}
	if rt.byName == nil && len(rt.specs) == mapTools {
		rt.byName = make(map[string]int, 2*mapTools)
		for i := range rt.specs {
			rt.byName[rt.specs[i].Name] = i
		}
	}
	if rt.byName != nil {
		rt.byName[spec.Name] = len(rt.specs)
	}
	rt.tools = append(rt.tools, t)
	rt.specs = append(rt.specs, spec)
	return true
}

// toolsFor gathers the tools of a run of ca. A tool source's tool named
// like one gathered before is left out, with a log line: names are the
// model's only way to say which tool it calls.
func (r *Runner) toolsFor(ctx context.Context, ca *compiledAgent) runTools {
	var rt runTools
	if len(ca.sources) == 0 && len(ca.tools) > 0 {
		rt.tools = make([]agentstream.Tool, 0, len(ca.tools))
		rt.specs = make([]agentstream.ToolSpec, 0, len(ca.tools))
	}
	add := func(t agentstream.Tool, from string) {
		spec := t.Spec()
		if !rt.add(t, spec) {
			r.logger.Warn("a tool is named like another tool of the agent; it is left out", "agent", ca.Name, "tool", spec.Name, "source", from)
		}
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
