package agent

import (
	"slices"
	"strings"
	"testing"
	"text/template"

	"github.com/agentstream/agentstream"
)

func TestTopFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tmpl     string
		fields   []string
		required []string
	}{
		{"plain text", []string{}, []string{}},
		{"{{.a}} and {{.b}}", []string{"a", "b"}, []string{"a", "b"}},
		{"{{if .a}}{{.b}}{{else}}{{.c}}{{end}}", []string{"a", "b", "c"}, []string{}},
		{"{{if .a}}x{{else if .b}}{{.c}}{{end}}", []string{"a", "b", "c"}, []string{}},
		{"{{with .a}}{{.inner}}{{$.top}}{{else}}{{.b}}{{end}}", []string{"a", "b", "top"}, []string{}},
		{"{{with .a}}x{{else with .b}}{{.}}{{end}}", []string{"a", "b"}, []string{}},
		{"{{if and .a .b}}x{{end}}{{.a}}", []string{"a", "b"}, []string{"a"}},
		{"{{range .items}}{{.x}}{{$.top}}{{end}}", []string{"items", "top"}, []string{"items", "top"}},
		{"{{if .a}}{{range .items}}{{$.top}}{{end}}{{end}}", []string{"a", "items", "top"}, []string{}},
		{"{{.a.b}} {{printf \"%v\" .c}}", []string{"a", "c"}, []string{"a", "c"}},
		{"{{$n := .name}}{{if $n}}{{$n}}{{end}}", []string{"name"}, []string{"name"}},
		{"{{if .a}}{{end}}{{$.z}}", []string{"a", "z"}, []string{"z"}},
		{"{{.b}}{{.a}}{{.b}}", []string{"a", "b"}, []string{"a", "b"}},
	}
	for _, tt := range tests {
		fields, required := topFields(template.Must(template.New("t").Parse(tt.tmpl)).Tree.Root)
		slices.Sort(fields)
		if !slices.Equal(fields, tt.fields) || !slices.Equal(required, tt.required) {
			t.Errorf("%s: fields %v, required %v; want %v, %v", tt.tmpl, fields, required, tt.fields, tt.required)
		}
	}
}

// TestRender: a key used outside an if or a with is required, and a
// context without it (or with it null) is refused naming it; a key used
// only under a condition is optional and renders empty, never as
// "<no value>"; the run's own context is left as it was.
func TestRender(t *testing.T) {
	t.Parallel()
	r := &Runner{cfg: Config{DefaultModel: "m"}.WithDefaults()}
	tests := []struct {
		tmpl string
		ctx  map[string]any
		want string
		// err, when set, is what the refusal must say.
		err []string
	}{
		{"Address the user as {{.nickname}}.", map[string]any{"nickname": "Sam"}, "Address the user as Sam.", nil},
		{"Address the user as {{.nickname}}.", nil, "", []string{`context key "nickname"`, "{{with .nickname}}"}},
		{"Address the user as {{.nickname}}.", map[string]any{"other": 1}, "", []string{`"nickname"`}},
		{"Address the user as {{.nickname}}.", map[string]any{"nickname": nil}, "", []string{`"nickname"`}},
		{"{{.b}} {{.a}} {{.c}}", map[string]any{"c": 1}, "", []string{`context keys "a", "b"`, "send them"}},
		{"Falsy values are present: {{.n}} {{.s}} {{.f}}", map[string]any{"n": 0, "s": "", "f": false}, "Falsy values are present: 0  false", nil},
		{"Baby is {{.baby_name}}.{{with .week}} Week {{.}}.{{end}}", map[string]any{"baby_name": "Hana"}, "Baby is Hana.", nil},
		{"Baby is {{.baby_name}}.{{with .week}} Week {{.}}.{{end}}", map[string]any{"baby_name": "Hana", "week": 12}, "Baby is Hana. Week 12.", nil},
		{"Baby is {{.baby_name}}.{{with .week}} Week {{.}}.{{end}}", map[string]any{"week": 12}, "", []string{`"baby_name"`}},
		{"{{if .vip}}Dear {{.name}}.{{else}}Hi {{.fallback}}.{{end}}", nil, "Hi .", nil},
		{"{{if .vip}}Dear {{.name}}.{{else}}Hi.{{end}}", map[string]any{"vip": true}, "Dear .", nil},
		{"{{with .lang}}Answer in {{.}}.{{end}}", nil, "", nil},
	}
	for _, tc := range tests {
		ca, err := r.compile(agentstream.Agent{Name: "a", Instructions: tc.tmpl})
		if err != nil {
			t.Fatal(err)
		}
		before := len(tc.ctx)
		got, err := ca.render(tc.ctx)
		if len(tc.ctx) != before {
			t.Errorf("%s: render changed the context: %v", tc.tmpl, tc.ctx)
		}
		if tc.err == nil {
			if err != nil || got != tc.want {
				t.Errorf("%s with %v: %q, %v; want %q", tc.tmpl, tc.ctx, got, err, tc.want)
			}
			continue
		}
		if agentstream.CodeOf(err) != agentstream.CodeInvalidRequest || got != "" {
			t.Errorf("%s with %v: %q, %v; want a CodeInvalidRequest error", tc.tmpl, tc.ctx, got, err)
			continue
		}
		for _, want := range append(tc.err, `agent "a"`) {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s with %v: error %q lacks %q", tc.tmpl, tc.ctx, err, want)
			}
		}
	}
}
