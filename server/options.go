package server

import (
	"errors"
	"fmt"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/agent"
	"github.com/agentstream/agentstream/config"
)

// An Option adds what a Go program embedding agentstream brings to
// New: its own tools, tool sources and models. docs/embedding.md shows
// them at work.
type Option func(*options)

type options struct {
	tools     []agentstream.Tool
	sources   []agentstream.ToolSource
	model     agentstream.Model
	endpoints map[string]agentstream.Model
	// endpointNames keeps the endpoints' order, for validation.
	endpointNames []string
	// errs are the options' own mistakes (a nil tool), reported by New.
	errs []error
}

// WithTools adds tools written in Go. The config's agents name them under
// tools, as they name the built-in ones; a name must be one model APIs
// accept (1 to 64 letters, digits, _ or -) and differ from every other
// tool's, built-in or declared in the config. A tool reads the run that
// calls it with agentstream.RunInfoFrom(ctx), is cancelled through ctx
// when the run stops or its timeout passes (runs.tool_timeout, or its own
// as an agentstream.TimedTool), and may be called concurrently. Its
// arguments are checked against its Spec's JSON Schema before Call;
// tools.NewFunc makes a tool of a function.
func WithTools(tools ...agentstream.Tool) Option {
	return func(o *options) {
		for _, t := range tools {
			if t == nil {
				o.errs = append(o.errs, errors.New("server.WithTools: a nil tool"))
				continue
			}
			o.tools = append(o.tools, t)
		}
	}
}

// WithToolSources adds tool sources written in Go: sets of tools that can
// change while the server runs. Agents name a source under mcp_servers,
// and each of their runs gets the tools the source has when it starts.
// The server does not close them: the program does, after Shutdown.
func WithToolSources(sources ...agentstream.ToolSource) Option {
	return func(o *options) {
		for _, s := range sources {
			if s == nil {
				o.errs = append(o.errs, errors.New("server.WithToolSources: a nil tool source"))
				continue
			}
			o.sources = append(o.sources, s)
		}
	}
}

// WithModel makes m the model of the agents without an endpoint, in place
// of the openai: block (and of the simulated model, which is then not
// started). It is called with the agent's model name (the config's model
// when the agent names none) and must honour ctx.
func WithModel(m agentstream.Model) Option {
	return func(o *options) {
		if m == nil {
			o.errs = append(o.errs, errors.New("server.WithModel: a nil model"))
			return
		}
		o.model = m
	}
}

// WithEndpoint adds a model endpoint written in Go, which agents pick with
// endpoint: name, as they pick the config's models entries.
func WithEndpoint(name string, m agentstream.Model) Option {
	return func(o *options) {
		if m == nil {
			o.errs = append(o.errs, fmt.Errorf("server.WithEndpoint(%q): a nil model", name))
			return
		}
		if o.endpoints == nil {
			o.endpoints = map[string]agentstream.Model{}
		}
		if _, dup := o.endpoints[name]; !dup {
			o.endpoints[name] = m
		}
		// A second one of the name is reported by validation.
		o.endpointNames = append(o.endpointNames, name)
	}
}

func newOptions(opts []Option) *options {
	o := &options{}
	for _, opt := range opts {
		if opt != nil {
			opt(o)
		}
	}
	return o
}

// validation tells config.Validate of the names the options add.
func (o *options) validation() []config.ValidateOption {
	var tools, sources []string
	for _, t := range o.tools {
		tools = append(tools, t.Spec().Name)
	}
	for _, s := range o.sources {
		sources = append(sources, s.Name())
	}
	return []config.ValidateOption{
		config.KnownTools(tools...), config.KnownToolSources(sources...), config.KnownEndpoints(o.endpointNames...),
		// New checks addr against the store's keys once it is open.
		config.StoreMayHoldKeys(),
	}
}

// addTo adds the options' tools, sources and endpoints to what the config
// made of d (New puts WithModel's model in d.Model). Validation has refused a name used twice; a name taken here
// nonetheless (a tool source named like a config's server) is an error.
func (o *options) addTo(d *agent.Deps) error {
	if len(o.tools) > 0 && d.Tools == nil {
		d.Tools = map[string]agentstream.Tool{}
	}
	for _, t := range o.tools {
		name := t.Spec().Name
		if _, dup := d.Tools[name]; dup {
			return fmt.Errorf("server.WithTools: a tool named %q exists already", name)
		}
		d.Tools[name] = t
	}
	if len(o.sources) > 0 && d.Sources == nil {
		d.Sources = map[string]agentstream.ToolSource{}
	}
	for _, s := range o.sources {
		if _, dup := d.Sources[s.Name()]; dup {
			return fmt.Errorf("server.WithToolSources: a tool source named %q exists already", s.Name())
		}
		d.Sources[s.Name()] = s
	}
	if len(o.endpoints) > 0 && d.Models == nil {
		d.Models = map[string]agentstream.Model{}
	}
	for name, m := range o.endpoints {
		if _, dup := d.Models[name]; dup {
			return fmt.Errorf("server.WithEndpoint: a model endpoint named %q exists already", name)
		}
		d.Models[name] = m
	}
	return nil
}
