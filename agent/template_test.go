package agent

import (
	"slices"
	"testing"
	"text/template"

	"github.com/agentstream/agentstream"
)

func TestTopFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tmpl string
		want []string
	}{
		{"plain text", []string{}},
		{"{{.a}} and {{.b}}", []string{"a", "b"}},
		{"{{if .a}}{{.b}}{{else}}{{.c}}{{end}}", []string{"a", "b", "c"}},
		{"{{with .a}}{{.inner}}{{else}}{{.b}}{{end}}", []string{"a", "b"}},
		{"{{range .items}}{{.x}}{{$.top}}{{end}}", []string{"items", "top"}},
		{"{{.a.b}} {{printf \"%v\" .c}}", []string{"a", "c"}},
	}
	for _, tt := range tests {
		got := topFields(template.Must(template.New("t").Parse(tt.tmpl)).Tree.Root)
		slices.Sort(got)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: fields %v, want %v", tt.tmpl, got, tt.want)
		}
	}
}

// TestRenderMissingKeys: a key the context lacks renders empty, never as
// "<no value>", and the run's own context is left as it was.
func TestRenderMissingKeys(t *testing.T) {
	t.Parallel()
	r := &Runner{cfg: Config{DefaultModel: "m"}.WithDefaults()}
	ca, err := r.compile(agentstream.Agent{Name: "a", Instructions: "Baby is {{.baby_name}}.{{with .week}} Week {{.}}.{{end}}"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := map[string]any{"week": 12}
	for _, tc := range []struct {
		ctx  map[string]any
		want string
	}{
		{nil, "Baby is ."},
		{ctx, "Baby is . Week 12."},
		{map[string]any{"baby_name": "Hana"}, "Baby is Hana."},
	} {
		got, err := ca.render(tc.ctx)
		if err != nil || got != tc.want {
			t.Errorf("render(%v) = %q, %v; want %q", tc.ctx, got, err, tc.want)
		}
	}
	if len(ctx) != 1 {
		t.Fatalf("render changed the context: %v", ctx)
	}
}
