package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

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

// TestRenderWithoutContext: instructions that require nothing are
// rendered once, when the agent is compiled, and a run without context
// gets that text, the same as rendering them anew; a run with context is
// rendered with it. Instructions that fail without context fail on every
// run, as before.
func TestRenderWithoutContext(t *testing.T) {
	t.Parallel()
	r := &Runner{cfg: Config{DefaultModel: "m"}.WithDefaults()}
	ca, err := r.compile(agentstream.Agent{Name: "a", Instructions: "Hi.{{with .lang}} Answer in {{.}}.{{end}}"})
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := ca.execute(nil)
	if !ca.bareOK || ca.bare != "Hi." || err != nil || fresh != ca.bare {
		t.Fatalf("compiled %q (%v), rendered anew %q (%v); want both %q", ca.bare, ca.bareOK, fresh, err, "Hi.")
	}
	for _, ctx := range []map[string]any{nil, {}} {
		if got, err := ca.render(ctx); got != "Hi." || err != nil {
			t.Errorf("render(%v) = %q, %v", ctx, got, err)
		}
	}
	if got, err := ca.render(map[string]any{"lang": "French"}); got != "Hi. Answer in French." || err != nil {
		t.Errorf("render with a context = %q, %v", got, err)
	}

	failing, err := r.compile(agentstream.Agent{Name: "a", Instructions: `{{if .a}}x{{end}}{{template "nowhere"}}`})
	if err != nil {
		t.Fatal(err)
	}
	if failing.bareOK {
		t.Errorf("instructions that fail to render were kept as %q", failing.bare)
	}
	for range 2 {
		if got, err := failing.render(nil); got != "" || agentstream.CodeOf(err) != agentstream.CodeInvalidRequest {
			t.Errorf("render = %q, %v; want a CodeInvalidRequest error", got, err)
		}
	}
}

// TestTemplatesCannotReach: an agent's instructions reach nothing but the
// run's context. Functions that would read files, the environment or run
// a process do not exist (the agent is refused at start); the builtins
// that call or print values find only JSON values, without methods; a
// template name is never a file; and rendering is bounded, in depth and
// in output, with an error that says so.
func TestTemplatesCannotReach(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret.txt")
	const fileSecret, envSecret = "file-secret-8f2a", "env-secret-41c9"
	if err := os.WriteFile(secretFile, []byte(fileSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AGENTSTREAM_TEMPLATE_SECRET", envSecret)
	r := &Runner{cfg: Config{DefaultModel: "m"}.WithDefaults()}

	// Functions some template engines offer: none is defined here.
	for _, fn := range []string{
		`env "AGENTSTREAM_TEMPLATE_SECRET"`, `getenv "AGENTSTREAM_TEMPLATE_SECRET"`, `expandenv "$HOME"`,
		`readFile "` + secretFile + `"`, `include "` + secretFile + `"`, `file "` + secretFile + `"`,
		`exec "id"`, `shell "id"`, `os.Getenv "HOME"`, `tpl "x"`, `now`,
	} {
		_, err := r.compile(agentstream.Agent{Name: "a", Instructions: "{{" + fn + "}}"})
		if err == nil || !strings.Contains(err.Error(), "not defined") {
			t.Errorf("{{%s}}: %v; want the agent refused (function not defined)", fn, err)
		}
	}

	// The context is JSON: strings, numbers, booleans, lists, objects.
	var ctx map[string]any
	if err := json.Unmarshal([]byte(`{"f": "os.Getenv", "path": "`+secretFile+`", "n": 3, "list": ["a", "b"], "obj": {"k": "v"}}`), &ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tmpl string
		// err, when set, is what the refusal says; else want is the text.
		err, want string
	}{
		{tmpl: `{{call .f "AGENTSTREAM_TEMPLATE_SECRET"}}`, err: "non-function"},
		{tmpl: `{{call .obj}}`, err: "non-function"},
		{tmpl: `{{.f.Name}}`, err: "can't evaluate field Name"},
		{tmpl: `{{.path.Read}}`, err: "can't evaluate field Read"},
		{tmpl: `{{.obj.Environ}}`, want: "<no value>"},
		{tmpl: `{{template "` + secretFile + `"}}`, err: "not defined"},
		{tmpl: `{{template "secret.txt" .}}`, err: "not defined"},
		{tmpl: `{{define "x"}}{{template "x" .}}{{end}}{{template "x" .}}`, err: "exceeded maximum template depth"},
		{tmpl: `{{define "x"}}ab{{template "x"}}{{template "x"}}{{end}}{{template "x"}}`, err: "exceeded maximum template depth"},
		{tmpl: `{{printf "%v %+v %#v" . .obj .path}}`, want: `map[f:os.Getenv list:[a b] n:3 obj:map[k:v] path:` + secretFile + `] map[k:v] "` + secretFile + `"`},
		{tmpl: `{{print .path}} {{len .list}} {{index .obj "k"}} {{slice .f 0 2}} {{js .path}} {{html "<"}} {{urlquery "a b"}}`,
			want: secretFile + ` 2 v os ` + template.JSEscapeString(secretFile) + ` &lt; a+b`},
		{tmpl: `{{range .list}}{{.}}{{end}}{{if eq .n 3.0}}!{{end}}`, want: "ab!"},
	} {
		ca, err := r.compile(agentstream.Agent{Name: "a", Instructions: tc.tmpl})
		if err != nil {
			t.Fatalf("%s: %v", tc.tmpl, err)
		}
		got, err := ca.render(ctx)
		if strings.Contains(got, fileSecret) || strings.Contains(got, envSecret) || (err != nil && (strings.Contains(err.Error(), fileSecret) || strings.Contains(err.Error(), envSecret))) {
			t.Fatalf("%s reached a secret: %q, %v", tc.tmpl, got, err)
		}
		if tc.err == "" {
			if err != nil || got != tc.want {
				t.Errorf("%s: %q, %v; want %q", tc.tmpl, got, err, tc.want)
			}
			continue
		}
		if agentstream.CodeOf(err) != agentstream.CodeInvalidRequest || !strings.Contains(err.Error(), tc.err) || got != "" {
			t.Errorf("%s: %q, %v; want a CodeInvalidRequest error saying %q", tc.tmpl, got, err, tc.err)
		}
	}
}

// TestRenderBounded: instructions that would render to more than
// MaxInstructionsBytes stop there with a 400 that says so, however the
// output grows (a client's long list ranged over, ranges nested, a
// template calling itself twice), and instructions longer than that are
// refused when the agent is loaded.
func TestRenderBounded(t *testing.T) {
	t.Parallel()
	r := &Runner{cfg: Config{DefaultModel: "m"}.WithDefaults()}
	long := make([]any, 3000)
	for i := range long {
		long[i] = strings.Repeat("x", 100)
	}
	for _, tc := range []struct {
		tmpl string
		ctx  map[string]any
	}{
		{"{{range .items}}{{.}}{{end}}", map[string]any{"items": long}},
		{"{{range .items}}{{range $.items}}{{.}}{{end}}{{end}}", map[string]any{"items": long}},
		{`{{define "x"}}{{.}}{{template "x" .}}{{template "x" .}}{{end}}{{template "x" .s}}`, map[string]any{"s": strings.Repeat("y", 1000)}},
		{"{{printf \"%0*d\" .n 1}}", map[string]any{"n": MaxInstructionsBytes + 1}},
	} {
		ca, err := r.compile(agentstream.Agent{Name: "a", Instructions: tc.tmpl})
		if err != nil {
			t.Fatalf("%s: %v", tc.tmpl, err)
		}
		start := time.Now()
		got, err := ca.render(tc.ctx)
		if agentstream.CodeOf(err) != agentstream.CodeInvalidRequest || got != "" ||
			!strings.Contains(err.Error(), fmt.Sprintf("more than %d bytes", MaxInstructionsBytes)) {
			t.Errorf("%s: %d bytes, %v; want a 400 naming the bound", tc.tmpl, len(got), err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %s", tc.tmpl, d)
		}
	}
	// Just under the bound renders.
	ca, err := r.compile(agentstream.Agent{Name: "a", Instructions: "{{.s}}"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ca.render(map[string]any{"s": strings.Repeat("z", MaxInstructionsBytes)}); err != nil || len(got) != MaxInstructionsBytes {
		t.Errorf("instructions of exactly the bound: %d bytes, %v", len(got), err)
	}
	if _, err := r.compile(agentstream.Agent{Name: "a", Instructions: strings.Repeat("w", MaxInstructionsBytes+1)}); err == nil ||
		!strings.Contains(err.Error(), "instructions") {
		t.Errorf("instructions longer than the bound: %v; want the agent refused", err)
	}
}
