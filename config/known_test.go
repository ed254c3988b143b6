package config

import (
	"errors"
	"strings"
	"testing"
)

// TestValidateKnown: the names a Go program adds are accepted where
// agents name them, and only with the option that adds them; names that
// cannot work are problems of their own.
func TestValidateKnown(t *testing.T) {
	t.Parallel()
	c, err := Decode([]byte(`default_agent: shop
agents:
  - name: shop
    endpoint: local
    model: shop-model
    tools: [order_status, current_time]
    mcp_servers: [catalog]
`))
	if err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	all := []ValidateOption{KnownTools("order_status"), KnownToolSources("catalog"), KnownEndpoints("local")}
	if err := c.Validate(all...); err != nil {
		t.Fatalf("with every name known: %v", err)
	}

	tests := []struct {
		name string
		opts []ValidateOption
		want []string // problems, in order
	}{
		{"nothing known", nil, []string{
			`line 4:5: agents[0].endpoint: unknown model endpoint "local"; no model endpoints are declared: add it under models:, or remove endpoint: to use the openai: block`,
			`line 6:13: agents[0].tools[0]: unknown tool "order_status"; the tools are current_time, due_date`,
			`line 7:19: agents[0].mcp_servers[0]: unknown MCP server "catalog"; no MCP server is declared: add it under mcp_servers`,
		}},
		{"another tool", []ValidateOption{KnownTools("order_state"), KnownToolSources("catalog"), KnownEndpoints("local")}, []string{
			`line 6:13: agents[0].tools[0]: unknown tool "order_status"; did you mean order_state?`,
		}},
		{"other sources and endpoints", []ValidateOption{KnownTools("order_status"), KnownToolSources("files", "web"), KnownEndpoints("openrouter")}, []string{
			`agents[0].endpoint: unknown model endpoint "local"; the model endpoints are openrouter`,
			`agents[0].mcp_servers[0]: unknown MCP server "catalog"; the MCP servers are files, web`,
		}},
		{"a built-in name", append([]ValidateOption{KnownTools("due_date")}, all...), []string{
			`the tool "due_date" added in Go is named like a tool the config already has (built in or declared): rename it`,
		}},
		{"twice", append([]ValidateOption{KnownTools("order_status"), KnownToolSources("catalog"), KnownEndpoints("local", "")}, all...), []string{
			`the tool "order_status" is added in Go twice`,
			`the tool source "catalog" is added in Go twice`,
			`a model endpoint added in Go has an empty name`,
			`the model endpoint "local" is added in Go twice`,
		}},
		{"names a model refuses", append([]ValidateOption{KnownTools("", "order status", strings.Repeat("x", 65), "ok-name_2")}, all...), []string{
			`a tool added in Go has an empty name`,
			`the tool "order status" added in Go: model APIs accept only 1 to 64 letters, digits, _ or -`,
			`the tool "` + strings.Repeat("x", 65) + `" added in Go: model APIs accept only`,
		}},
		{"nil option", append([]ValidateOption{nil}, all...), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Validate(tt.opts...)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				return
			}
			var ps Problems
			if !errors.As(err, &ps) || len(ps) != len(tt.want) {
				t.Fatalf("error:\n%v\nwant %d problems:\n%s", err, len(tt.want), strings.Join(tt.want, "\n"))
			}
			for i, w := range tt.want {
				if got := ps[i].String(); !strings.Contains(got, w) {
					t.Errorf("problem %d: %q, want it to contain %q", i, got, w)
				}
			}
		})
	}
}
