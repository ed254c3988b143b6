package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// An Override sets one setting from outside the config file: the
// environment or a flag.
type Override struct {
	// Key is the setting's path, as in the file: "addr", "openai.api_key".
	Key string
	// Value is read as the file's value would be: "30s", "8", "true". A
	// string setting takes it as it is.
	Value string
	// Origin names where the value came from in problems:
	// "env AGENTSTREAM_ADDR", "flag --addr".
	Origin string
}

// Load reads a YAML config file's contents, then applies the overrides in
// order, then validates the result with its defaults: name is the file's
// name in problems ("" for none). Its error is Problems, every problem at
// once: YAML syntax, unknown keys, values of the wrong type, bad overrides
// and what Validate finds, each at its line in the file or at the override
// that set it. The Config returned is without defaults (WithDefaults adds
// them) and remembers where its settings came from, so that its own
// Validate places its problems too. The file's ${NAME} references (see
// expand.go) are read from the process's environment, before the
// overrides apply (an override's value is taken as it is).
func Load(name string, data []byte, overrides ...Override) (Config, error) {
	return LoadEnv(name, data, os.LookupEnv, overrides...)
}

// LoadEnv is Load with the file's ${NAME} references read from lookup
// instead of the process's environment.
func LoadEnv(name string, data []byte, lookup func(string) (string, bool), overrides ...Override) (Config, error) {
	return loadEnv(name, data, lookup, nil, overrides...)
}

// LoadWith is Load with options for Validate: serve passes
// StoreMayHoldKeys, since it checks an addr beyond loopback against the
// keys of its store.
func LoadWith(name string, data []byte, opts []ValidateOption, overrides ...Override) (Config, error) {
	return loadEnv(name, data, os.LookupEnv, opts, overrides...)
}

func loadEnv(name string, data []byte, lookup func(string) (string, bool), opts []ValidateOption, overrides ...Override) (Config, error) {
	c, probs := decode(name, data)
	probs = append(probs, c.expand(lookup)...)
	for _, o := range overrides {
		probs = append(probs, c.override(o)...)
	}
	var invalid Problems
	if errors.As(c.WithDefaults().Validate(opts...), &invalid) {
		for _, p := range invalid {
			// A value that could not be read is reported already; what
			// its default then runs into is not the user's doing.
			if !c.src.failedAt(p.Path) {
				probs = append(probs, p)
			}
		}
	}
	return c, probs.err()
}

// Decode parses a YAML config without validating it, nor expanding its
// ${NAME} references. Unknown keys are
// errors, so a typo does not silently fall back to a default. Its error is
// Problems, every problem at once, each with its line.
func Decode(data []byte) (Config, error) {
	c, probs := decode("", data)
	return c, probs.err()
}

// source remembers where the settings of a Config read by Load or Decode
// came from, for Validate to place its problems.
type source struct {
	// name is the file's name in problems.
	name string
	// pos maps a setting's path to its key in the file (a list item's
	// path to the item).
	pos map[string]position
	// origin maps a setting's path to the override that set it.
	origin map[string]string
	// failed holds the paths whose value could not be read.
	failed map[string]bool
	// agents is how many agents the file declares: WithDefaults puts the
	// built-in ones before them.
	agents int
	// secrets are what ${NAME} references brought into secret settings.
	secrets []string
}

type position struct{ line, col int }

// place returns a Problem about path, placed at the override that set it,
// or at its key in the file (or its nearest enclosing key's). Safe on nil.
func (s *source) place(path string) Problem {
	p := Problem{Path: path}
	if s == nil {
		return p
	}
	for q := path; q != ""; q = parentPath(q) {
		if o, ok := s.origin[q]; ok {
			p.Source = o
			return p
		}
		if at, ok := s.pos[q]; ok {
			p.Source, p.Line, p.Col = s.name, at.line, at.col
			return p
		}
	}
	p.Source = s.name
	return p
}

// failedAt reports whether path, or a setting holding it, could not be
// read; "" stands for the whole file.
func (s *source) failedAt(path string) bool {
	if s == nil {
		return false
	}
	for q := path; q != ""; q = parentPath(q) {
		if s.failed[q] {
			return true
		}
	}
	return s.failed[""]
}

// parentPath strips the last key or index: agents[1].tools[0] →
// agents[1].tools → agents[1] → agents → "".
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func decode(name string, data []byte) (Config, Problems) {
	c := Config{src: &source{name: name, pos: map[string]position{}, origin: map[string]string{}, failed: map[string]bool{}}}
	d := &decoder{src: c.src}
	// Duplicate keys are reported by the decoder, with the others.
	file, err := parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		p := Problem{Source: name, Message: "YAML syntax: " + err.Error()}
		var ye yaml.Error
		if errors.As(err, &ye) {
			p.Message = "YAML syntax: " + ye.GetMessage()
			if tk := ye.GetToken(); tk != nil && tk.Position != nil {
				p.Line, p.Col = tk.Position.Line, tk.Position.Column
			}
		}
		c.src.failed[""] = true
		return c, Problems{p}
	}
	var body ast.Node
	for _, doc := range file.Docs {
		if doc.Body == nil {
			continue
		}
		if body != nil {
			d.problem(doc.Body, "", "a second YAML document (after ---): the config is one document")
			break
		}
		body = doc.Body
		ast.Walk(d, body)
	}
	if body != nil {
		d.value(body, reflect.ValueOf(&c).Elem(), "")
	}
	c.src.agents = len(c.Agents)
	return c, d.probs
}

// override sets o's setting on c, and records its origin.
func (c *Config) override(o Override) Problems {
	v, ok := settingByPath(reflect.ValueOf(c).Elem(), o.Key)
	if !ok {
		return Problems{{Source: o.Origin, Path: o.Key, Message: "no such setting"}}
	}
	c.src.origin[o.Key] = o.Origin
	delete(c.src.failed, o.Key)
	if v.Kind() == reflect.String {
		v.SetString(o.Value)
		return nil
	}
	d := &decoder{src: c.src, override: o.Origin}
	file, err := parser.ParseBytes([]byte(o.Value), 0)
	if err != nil || len(file.Docs) != 1 || file.Docs[0].Body == nil {
		d.fail(nil, o.Key, "%q is not a single value", o.Value)
		return d.probs
	}
	d.value(file.Docs[0].Body, v, o.Key)
	return d.probs
}

// settingByPath finds the field of a dotted path (no list indexes) in a
// Config, allocating the pointers on the way.
func settingByPath(v reflect.Value, path string) (reflect.Value, bool) {
	for key := range strings.SplitSeq(path, ".") {
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		f, ok := fieldsOf(v.Type()).find(key)
		if !ok {
			return reflect.Value{}, false
		}
		v = v.FieldByIndex(f.index)
	}
	return v, path != ""
}

// decoder decodes YAML nodes into the Config's fields by reflection, one
// value at a time, so that a bad value is one problem and the rest of the
// file is still read. It visits the nodes first (Visit) to find anchors.
type decoder struct {
	src *source
	// override, when set, is the origin of the value being decoded: its
	// problems have no line, and it records no positions.
	override string
	probs    Problems
	anchors  map[string][]*ast.AnchorNode
	// secret counts the settings being decoded that are secrets
	// (expand:"key" or "secret"), whose values, and all inside them, no
	// problem quotes; here is set while decoding a setting whose type holds
	// one (auth.keys), whose own value no problem quotes either.
	secret int
	here   bool
}

// Visit collects the anchors, in document order, for aliases to find.
func (d *decoder) Visit(n ast.Node) ast.Visitor {
	if a, ok := n.(*ast.AnchorNode); ok && a.Name != nil {
		if d.anchors == nil {
			d.anchors = map[string][]*ast.AnchorNode{}
		}
		name := a.Name.GetToken().Value
		d.anchors[name] = append(d.anchors[name], a)
	}
	return d
}

func (d *decoder) problem(n ast.Node, path, format string, args ...any) {
	p := Problem{Path: path, Message: fmt.Sprintf(format, args...)}
	if d.override != "" {
		p.Source = d.override
	} else {
		at := nodePos(n)
		p.Source, p.Line, p.Col = d.src.name, at.line, at.col
	}
	d.probs = append(d.probs, p)
}

// fail reports a value that could not be read: the setting keeps its
// default.
func (d *decoder) fail(n ast.Node, path, format string, args ...any) {
	d.problem(n, path, format, args...)
	d.src.failed[path] = true
}

func (d *decoder) record(path string, n ast.Node) {
	if d.override == "" {
		d.src.pos[path] = nodePos(n)
	}
}

// resolve looks through tags, anchors and aliases to the value.
func (d *decoder) resolve(n ast.Node, path string) (ast.Node, bool) {
	// Bounded: an anchor whose value is an alias to itself loops.
	for range 100 {
		switch x := n.(type) {
		case *ast.TagNode:
			n = x.Value
		case *ast.AnchorNode:
			n = x.Value
		case *ast.AliasNode:
			a := d.anchor(x)
			if a == nil {
				d.fail(x, path, "the alias *%s names no anchor (&%s) before it", x.Value.GetToken().Value, x.Value.GetToken().Value)
				return nil, false
			}
			n = a.Value
		default:
			return n, true
		}
	}
	d.fail(n, path, "aliases refer to each other in a loop")
	return nil, false
}

// anchor returns the last anchor of an alias's name defined before it.
func (d *decoder) anchor(alias *ast.AliasNode) *ast.AnchorNode {
	if alias.Value == nil {
		return nil
	}
	at := nodePos(alias)
	var found *ast.AnchorNode
	for _, a := range d.anchors[alias.Value.GetToken().Value] {
		if p := nodePos(a); p.line < at.line || (p.line == at.line && p.col < at.col) {
			found = a
		}
	}
	return found
}

var durationType = reflect.TypeFor[time.Duration]()

// value decodes n into v, the setting at path.
func (d *decoder) value(n ast.Node, v reflect.Value, path string) {
	prev := d.here
	d.here = holdsSecret(v.Type())
	defer func() { d.here = prev }()
	n, ok := d.resolve(n, path)
	if !ok {
		return
	}
	// An empty value ("key:" or null) keeps the default.
	if n == nil || n.Type() == ast.NullType {
		return
	}
	if v.Type() == durationType {
		d.duration(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		before := len(d.probs)
		d.value(n, e.Elem(), path)
		if len(d.probs) == before {
			v.Set(e)
		}
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Slice:
		d.sequence(n, v, path)
	case reflect.Map:
		d.dict(n, v, path)
	case reflect.String:
		s, ok := scalarText(n)
		if !ok {
			d.fail(n, path, "want a single value, not %s", d.show(n))
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := n.(*ast.BoolNode)
		if !ok {
			d.fail(n, path, "%s is not true or false", d.show(n))
			return
		}
		v.SetBool(b.Value)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		d.integer(n, v, path)
	case reflect.Float32, reflect.Float64:
		var f float64
		switch x := n.(type) {
		case *ast.FloatNode:
			f = x.Value
		case *ast.IntegerNode:
			f, _ = strconv.ParseFloat(x.GetToken().Value, 64)
		default:
			d.fail(n, path, "%s is not a number", d.show(n))
			return
		}
		v.SetFloat(f)
	default:
		// A kind no setting has yet: the YAML library decodes it.
		if err := yaml.NodeToValue(n, v.Addr().Interface(), yaml.Strict()); err != nil {
			var ye yaml.Error
			msg := err.Error()
			if errors.As(err, &ye) {
				msg = ye.GetMessage()
			}
			d.fail(n, path, "%s", msg)
		}
	}
}

func (d *decoder) mapping(n ast.Node, v reflect.Value, path string) {
	var pairs []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		pairs = m.Values
	case *ast.MappingValueNode:
		pairs = []*ast.MappingValueNode{m}
	default:
		if path == "" {
			d.fail(n, path, "the config file must be a mapping (key: value lines), not %s", d.show(n))
		} else {
			d.fail(n, path, "want a mapping (key: value lines), not %s", d.show(n))
		}
		return
	}
	fields := fieldsOf(v.Type())
	d.eachKey(pairs, path, func(m ast.Node) { d.merge(m, v, path) }, func(mv *ast.MappingValueNode, key, p string) {
		f, ok := fields.find(key)
		if !ok {
			d.problem(mv.Key, p, "%s", unknownKey(key, fields, path))
			return
		}
		d.record(p, mv.Key)
		if tag := v.Type().FieldByIndex(f.index).Tag.Get(expandTag); tag == expandKey || tag == expandSecret {
			d.secret++
			defer func() { d.secret-- }()
		}
		d.value(mv.Value, v.FieldByIndex(f.index), p)
	})
}

// eachKey walks a mapping's pairs as every mapping is read: its merge keys
// first (merge gets each one's value), so that the mapping's own keys
// override what they bring in; then its own keys, each once, refusing a
// key that is not a name or is set twice; fn gets each pair with its key
// and the key's path.
func (d *decoder) eachKey(pairs []*ast.MappingValueNode, path string, merge func(ast.Node), fn func(mv *ast.MappingValueNode, key, p string)) {
	for _, mv := range pairs {
		if mv.Key.IsMergeKey() {
			merge(mv.Value)
		}
	}
	seen := map[string]position{}
	for _, mv := range pairs {
		if mv.Key.IsMergeKey() {
			continue
		}
		key, ok := scalarText(mv.Key)
		if mk, isKey := mv.Key.(*ast.MappingKeyNode); isKey {
			key, ok = scalarText(mk.Value)
		}
		if !ok {
			d.problem(mv.Key, path, "a key must be a name, not %s", d.show(mv.Key))
			continue
		}
		p := joinPath(path, key)
		if first, dup := seen[key]; dup {
			d.problem(mv.Key, p, "set twice (first on line %d): keep one", first.line)
			continue
		}
		seen[key] = nodePos(mv.Key)
		fn(mv, key, p)
	}
}

// merge applies a merge key's value (<<: *anchor, or a list of them, the
// first winning) to the struct v.
func (d *decoder) merge(n ast.Node, v reflect.Value, path string) {
	n, ok := d.resolve(n, path)
	if !ok {
		return
	}
	if s, ok := n.(*ast.SequenceNode); ok {
		for i := len(s.Values) - 1; i >= 0; i-- {
			d.merge(s.Values[i], v, path)
		}
		return
	}
	d.mapping(n, v, path)
}

func (d *decoder) sequence(n ast.Node, v reflect.Value, path string) {
	s, ok := n.(*ast.SequenceNode)
	if !ok {
		if text, scalar := scalarText(n); scalar && d.secret == 0 && !d.here {
			d.fail(n, path, "want a list, e.g. [%s], not %s", text, d.show(n))
		} else {
			d.fail(n, path, "want a list (lines starting with -), not %s", d.show(n))
		}
		return
	}
	out := reflect.MakeSlice(v.Type(), len(s.Values), len(s.Values))
	for i, e := range s.Values {
		p := fmt.Sprintf("%s[%d]", path, i)
		d.record(p, e)
		d.value(e, out.Index(i), p)
	}
	v.Set(out)
}

func (d *decoder) integer(n ast.Node, v reflect.Value, path string) {
	if x, ok := n.(*ast.IntegerNode); ok {
		var i int64
		switch y := x.Value.(type) {
		case int64:
			i = y
		case uint64:
			if y > math.MaxInt64 {
				d.fail(n, path, "%s is too large", d.show(n))
				return
			}
			i = int64(y)
		}
		if v.OverflowInt(i) {
			d.fail(n, path, "%s is too large", d.show(n))
			return
		}
		v.SetInt(i)
		return
	}
	if s, ok := n.(*ast.StringNode); ok {
		switch _, err := strconv.ParseInt(s.Value, 10, 64); {
		case err == nil:
			d.fail(n, path, "%s is a string: write the number without quotes", d.show(n))
			return
		case errors.Is(err, strconv.ErrRange):
			d.fail(n, path, "%s is too large", s.Value)
			return
		}
	}
	hint := ""
	if strings.HasSuffix(path, "_bytes") {
		hint = "; sizes are in bytes, e.g. 4194304 for 4 MiB"
	}
	d.fail(n, path, "%s is not a whole number%s", d.show(n), hint)
}

func (d *decoder) duration(n ast.Node, v reflect.Value, path string) {
	var text string
	switch x := n.(type) {
	case *ast.StringNode:
		text = x.Value
	case *ast.IntegerNode, *ast.FloatNode:
		text = x.GetToken().Value
	default:
		d.fail(n, path, "want a duration such as 30s, not %s", d.show(n))
		return
	}
	dur, err := time.ParseDuration(text)
	if err != nil {
		if _, nerr := strconv.ParseFloat(text, 64); nerr == nil {
			d.fail(n, path, "%s is not a duration; durations need a unit, e.g. %ss", text, text)
		} else {
			d.fail(n, path, "%q is not a duration; write a number and a unit (ms, s, m or h), e.g. 30s, 500ms or 1m30s", text)
		}
		return
	}
	v.SetInt(int64(dur))
}

// scalarText is the text of a single value; false for a mapping or list.
func scalarText(n ast.Node) (string, bool) {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value, true
	case *ast.LiteralNode:
		return x.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return x.GetToken().Value, true
	}
	return "", false
}

// show describes a value in a problem: a string quoted, a number or a
// boolean as written, a mapping or list by its kind.
// show is n as a problem quotes it, unless it is or is in a secret
// setting: then only its kind.
func (d *decoder) show(n ast.Node) string {
	if d.secret > 0 || d.here {
		switch n.(type) {
		case *ast.MappingNode, *ast.MappingValueNode:
			return "a mapping"
		case *ast.SequenceNode:
			return "a list"
		}
		return "a single value (not shown: it may be a secret)"
	}
	return show(n)
}

// holdsSecret reports whether a setting of type t has a secret inside:
// a field marked expand:"key" or "secret", in a struct, list or map.
func holdsSecret(t reflect.Type) bool {
	return holdsSecretSeen(t, map[reflect.Type]bool{})
}

func holdsSecretSeen(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map:
		return holdsSecretSeen(t.Elem(), seen)
	case reflect.Struct:
		if t == durationType {
			return false
		}
		for i := range t.NumField() {
			f := t.Field(i)
			if tag := f.Tag.Get(expandTag); tag == expandKey || tag == expandSecret {
				return true
			}
			if f.IsExported() && holdsSecretSeen(f.Type, seen) {
				return true
			}
		}
	}
	return false
}

func show(n ast.Node) string {
	switch x := n.(type) {
	case *ast.StringNode:
		return strconv.Quote(x.Value)
	case *ast.LiteralNode:
		return "a block of text"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	}
	if s, ok := scalarText(n); ok {
		return s
	}
	return "this value"
}

// nodePos is where n is written: for a mapping, its first key.
func nodePos(n ast.Node) position {
	switch x := n.(type) {
	case nil:
		return position{}
	case *ast.MappingNode:
		if len(x.Values) > 0 {
			return nodePos(x.Values[0])
		}
	case *ast.MappingValueNode:
		return nodePos(x.Key)
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return position{}
	}
	return position{tk.Position.Line, tk.Position.Column}
}

type field struct {
	name  string
	index []int
	typ   reflect.Type
}

type fields []field

// fieldsOf lists a struct's settings: its exported fields, named by their
// yaml tag (else json tag, else lower-cased name), as the YAML library
// names them.
func fieldsOf(t reflect.Type) fields {
	var out fields
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name := strings.ToLower(f.Name)
		for _, tag := range []string{"yaml", "json"} {
			if v, ok := f.Tag.Lookup(tag); ok {
				if n, _, _ := strings.Cut(v, ","); n != "" {
					name = n
					break
				}
			}
		}
		if name != "-" {
			out = append(out, field{name: name, index: f.Index, typ: f.Type})
		}
	}
	return out
}

func (fs fields) find(name string) (field, bool) {
	for _, f := range fs {
		if f.name == name {
			return f, true
		}
	}
	return field{}, false
}

// unknownKey says what a key that is not a setting here may have meant:
// a setting spelled alike, the same setting elsewhere, or the list of the
// settings here.
func unknownKey(key string, here fields, path string) string {
	names := make([]string, len(here))
	for i, f := range here {
		names[i] = f.name
	}
	if s := closest(key, names); s != "" {
		return fmt.Sprintf("unknown key; did you mean %s?", joinPath(path, s))
	}
	if s := elsewhere(normalize(key), reflect.TypeFor[Config](), ""); s != "" {
		return fmt.Sprintf("unknown key here; did you mean %s?", s)
	}
	return fmt.Sprintf("unknown key; the keys here are %s", strings.Join(names, ", "))
}

// elsewhere finds a setting named key (normalized) anywhere in a config of
// type t: "runs.tool_timeout", or "agents[].max_turns" in a list item.
func elsewhere(key string, t reflect.Type, path string) string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Slice {
			path += "[]"
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == durationType {
		return ""
	}
	fs := fieldsOf(t)
	for _, f := range fs {
		if normalize(f.name) == key {
			return joinPath(path, f.name)
		}
	}
	for _, f := range fs {
		if s := elsewhere(key, f.typ, joinPath(path, f.name)); s != "" {
			return s
		}
	}
	return ""
}

// closest returns the name a typo most likely meant: the same but for
// case, - or _, or one or two letters off in a longer word; "" for none.
func closest(key string, names []string) string {
	best, bestDist := "", 3
	for _, n := range names {
		if normalize(n) == normalize(key) {
			return n
		}
		dist := levenshtein(strings.ToLower(key), n)
		if dist < bestDist && (dist == 1 || len(key) >= 5) {
			best, bestDist = n, dist
		}
	}
	return best
}

func normalize(s string) string {
	return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
