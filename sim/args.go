package sim

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/agentstream/agentstream/internal/jsonstr"
)

// Bounds of generated arguments, so that any schema, even a recursive or
// a huge one, gives a small answer quickly.
const (
	// maxDepth bounds the nesting of generated objects and arrays, and
	// the $ref hops followed for one value.
	maxDepth = 8
	// maxArrayItems bounds the items of one generated array (minItems
	// above it is not met).
	maxArrayItems = 16
	// maxValues bounds the values of one generated arguments object;
	// past it, arrays are empty and objects have no properties.
	maxValues = 512
	// maxStringLen bounds a string padded up to its minLength.
	maxStringLen = 1024
)

// SampleArguments returns arguments that fit the JSON Schema parameters,
// deterministically: a JSON object with every required property, in the
// order of "required" (more, in the order of "properties", when
// minProperties asks for more), each set to
//   - its const; else the first of its examples, its default and its enum
//     values that has one of its types (and is in its enum, when it has
//     one);
//   - else a value of its type (the first one not null of a type list; an
//     untyped schema with properties is an object, with items an array,
//     else a string): for a string, a sample of its format (date
//     "2025-01-15", date-time, time, email, hostname, ipv4, ipv6, uri,
//     uuid, duration) or "example", padded or cut to minLength and
//     maxLength (a pattern is not followed: give such a property an
//     example); for a number or an integer, 1 moved into minimum,
//     maximum, their exclusive forms and multipleOf; true; null; for an
//     array, its prefixItems then items up to max(minItems, 1) (within
//     maxItems), distinct for uniqueItems; for an object, the same
//     construction.
//
// Local $refs (#, #/$defs/…, #/definitions/…) are followed, allOf merged
// into the schema, and the first branch of anyOf and oneOf taken. Nesting
// stops at depth 8, arrays at 16 items and the whole at 512 values. Any
// input, even invalid, gives a JSON object.
func SampleArguments(parameters json.RawMessage) string {
	g := &gen{root: parameters, budget: maxValues}
	return string(g.object(nil, g.resolve(parseSchema(parameters), 0), 0, ""))
}

// WrongArguments returns arguments that the JSON Schema parameters
// refuses, deterministically, for testing how a client handles a model's
// mistakes: SampleArguments with, in order of preference,
//   - the first property with a type, an enum or a const (required ones
//     first) set to a value of another type, or out of its enum;
//   - else the first required property left out;
//   - else, when additionalProperties is false, an unexpected property;
//   - else (nothing in the schema can be broken) an array, not an object.
func WrongArguments(parameters json.RawMessage) string {
	g := &gen{root: parameters, budget: maxValues}
	s := g.resolve(parseSchema(parameters), 0)
	names := append([]string(nil), s.required...)
	for _, p := range s.props {
		names = append(names, p.name)
	}
	for _, name := range names {
		ps := g.resolve(parseSchema(s.prop(name)), 1)
		if w := wrongValue(ps); w != "" {
			return string(g.object(nil, s, 0, name, w))
		}
	}
	switch {
	case len(s.required) > 0:
		return string(g.object(nil, s, 0, s.required[0]))
	case s.noAdditional:
		b := g.object(nil, s, 0, "")
		if len(b) > 2 {
			b = append(b[:len(b)-1], ',')
		} else {
			b = b[:1]
		}
		return string(append(b, `"unexpected_argument":true}`...))
	}
	return "[]"
}

// wrongValue is a JSON value s refuses for its type, enum or const, or ""
// when s says none of them.
func wrongValue(s *schema) string {
	for _, v := range []string{`12345`, `"wrong"`, `true`, `{"wrong":true}`} {
		if len(s.types) > 0 && !typeAllowed(json.RawMessage(v), s.types) {
			return v
		}
	}
	if len(s.enum) > 0 || s.constVal != nil {
		for _, v := range []string{`"wrong-value"`, `12345`} {
			if !in(json.RawMessage(v), s.enum) && !sameJSON(json.RawMessage(v), s.constVal) {
				return v
			}
		}
	}
	return ""
}

// schema is the part of a JSON Schema the generator reads.
type schema struct {
	types         []string
	props         props
	required      []string
	constVal      json.RawMessage
	examples      []json.RawMessage
	def           json.RawMessage
	enum          []json.RawMessage
	format        string
	minLength     *int
	maxLength     *int
	minimum       *float64
	maximum       *float64
	exclMinimum   *float64
	exclMaximum   *float64
	multipleOf    *float64
	items         json.RawMessage
	prefixItems   []json.RawMessage
	minItems      *int
	maxItems      *int
	minProperties *int
	noAdditional  bool
	ref           string
	allOf         []json.RawMessage
	anyOf         []json.RawMessage
	oneOf         []json.RawMessage
}

// prop returns the schema of property name (nil when undeclared).
func (s *schema) prop(name string) json.RawMessage {
	for _, p := range s.props {
		if p.name == name {
			return p.raw
		}
	}
	return nil
}

// props are an object's properties in the order the schema lists them.
type props []prop

type prop struct {
	name string
	raw  json.RawMessage
}

func (ps *props) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errNotObject
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		if !seen[name] {
			seen[name] = true
			*ps = append(*ps, prop{name, raw})
		}
	}
	return nil
}

type notObjectError struct{}

func (notObjectError) Error() string { return "not a JSON object" }

var errNotObject = notObjectError{}

// parseSchema reads what it can of a schema: a keyword of the wrong shape
// is ignored, not the whole schema.
func parseSchema(raw json.RawMessage) *schema {
	s := &schema{}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return s // true, false, or not a schema: anything goes
	}
	get := func(key string, v any) bool {
		r, ok := m[key]
		return ok && json.Unmarshal(r, v) == nil
	}
	var one string
	if get("type", &one) {
		s.types = []string{one}
	} else {
		get("type", &s.types)
	}
	get("properties", &s.props)
	get("required", &s.required)
	if c, ok := m["const"]; ok {
		s.constVal = c
	}
	get("examples", &s.examples)
	if d, ok := m["default"]; ok {
		s.def = d
	}
	get("enum", &s.enum)
	get("format", &s.format)
	for key, p := range map[string]**int{"minLength": &s.minLength, "maxLength": &s.maxLength,
		"minItems": &s.minItems, "maxItems": &s.maxItems, "minProperties": &s.minProperties} {
		var n int
		if get(key, &n) {
			*p = &n
		}
	}
	for key, p := range map[string]**float64{"minimum": &s.minimum, "maximum": &s.maximum, "multipleOf": &s.multipleOf} {
		var f float64
		if get(key, &f) {
			*p = &f
		}
	}
	// exclusiveMinimum is a number since draft 6, a flag on minimum before.
	var f float64
	var flag bool
	if get("exclusiveMinimum", &f) {
		s.exclMinimum = &f
	} else if get("exclusiveMinimum", &flag) && flag && s.minimum != nil {
		s.exclMinimum, s.minimum = s.minimum, nil
	}
	var g float64
	if get("exclusiveMaximum", &g) {
		s.exclMaximum = &g
	} else if get("exclusiveMaximum", &flag) && flag && s.maximum != nil {
		s.exclMaximum, s.maximum = s.maximum, nil
	}
	if it, ok := m["items"]; ok {
		// An array of schemas is the tuple form before draft 2020-12.
		if !get("items", &s.prefixItems) {
			s.items = it
		}
	}
	get("prefixItems", &s.prefixItems)
	var additional bool
	s.noAdditional = get("additionalProperties", &additional) && !additional
	get("$ref", &s.ref)
	get("allOf", &s.allOf)
	get("anyOf", &s.anyOf)
	get("oneOf", &s.oneOf)
	return s
}

// merge returns s with what o says added: o's properties and required
// names joined to s's, o's other keywords in place of s's.
func merge(s, o *schema) *schema {
	out := *s
	out.props = append(props(nil), s.props...)
	for _, p := range o.props {
		if out.prop(p.name) == nil {
			out.props = append(out.props, p)
		}
	}
	out.required = append([]string(nil), s.required...)
	for _, r := range o.required {
		if !contains(out.required, r) {
			out.required = append(out.required, r)
		}
	}
	if len(o.types) > 0 {
		out.types = o.types
	}
	if o.constVal != nil {
		out.constVal = o.constVal
	}
	if len(o.examples) > 0 {
		out.examples = o.examples
	}
	if o.def != nil {
		out.def = o.def
	}
	if len(o.enum) > 0 {
		out.enum = o.enum
	}
	if o.format != "" {
		out.format = o.format
	}
	for _, p := range []struct{ dst, src **int }{{&out.minLength, &o.minLength}, {&out.maxLength, &o.maxLength},
		{&out.minItems, &o.minItems}, {&out.maxItems, &o.maxItems}, {&out.minProperties, &o.minProperties}} {
		if *p.src != nil {
			*p.dst = *p.src
		}
	}
	for _, p := range []struct{ dst, src **float64 }{{&out.minimum, &o.minimum}, {&out.maximum, &o.maximum},
		{&out.exclMinimum, &o.exclMinimum}, {&out.exclMaximum, &o.exclMaximum}, {&out.multipleOf, &o.multipleOf}} {
		if *p.src != nil {
			*p.dst = *p.src
		}
	}
	if o.items != nil {
		out.items = o.items
	}
	if len(o.prefixItems) > 0 {
		out.prefixItems = o.prefixItems
	}
	out.noAdditional = out.noAdditional || o.noAdditional
	return &out
}

// gen generates one arguments object.
type gen struct {
	root json.RawMessage
	// budget is how many more values may be generated.
	budget int
}

// resolve follows s's $ref, merges its allOf and takes the first branch
// of its anyOf and oneOf, depth bounding the hops.
func (g *gen) resolve(s *schema, depth int) *schema {
	for hops := 0; depth+hops <= maxDepth; hops++ {
		switch {
		case s.ref != "":
			target := g.lookup(s.ref)
			rest := *s
			rest.ref = ""
			s = merge(parseSchema(target), &rest)
		case len(s.allOf) > 0:
			all := s.allOf
			rest := *s
			rest.allOf = nil
			s = &rest
			for _, sub := range all {
				s = merge(s, g.resolve(parseSchema(sub), depth+hops+1))
			}
		case len(s.anyOf) > 0 || len(s.oneOf) > 0:
			var first json.RawMessage
			if len(s.anyOf) > 0 {
				first = s.anyOf[0]
			} else {
				first = s.oneOf[0]
			}
			rest := *s
			rest.anyOf, rest.oneOf = nil, nil
			s = merge(&rest, g.resolve(parseSchema(first), depth+hops+1))
		default:
			return s
		}
	}
	// Too deep: what is left unresolved is ignored.
	rest := *s
	rest.ref, rest.allOf, rest.anyOf, rest.oneOf = "", nil, nil, nil
	return &rest
}

// lookup finds a local $ref (a JSON pointer into the root schema); nil
// when there is none.
func (g *gen) lookup(ref string) json.RawMessage {
	if ref == "#" {
		return g.root
	}
	if !strings.HasPrefix(ref, "#/") {
		return nil
	}
	cur := g.root
	for part := range strings.SplitSeq(ref[2:], "/") {
		part = strings.NewReplacer("~1", "/", "~0", "~").Replace(part)
		var m map[string]json.RawMessage
		if json.Unmarshal(cur, &m) == nil {
			cur = m[part]
			continue
		}
		var a []json.RawMessage
		i, err := strconv.Atoi(part)
		if json.Unmarshal(cur, &a) != nil || err != nil || i < 0 || i >= len(a) {
			return nil
		}
		cur = a[i]
	}
	return cur
}

// object appends an object of s: its required properties (and more for
// minProperties). The property named skip is left out, unless override
// gives its value.
func (g *gen) object(buf []byte, s *schema, depth int, skip string, override ...string) []byte {
	buf = append(buf, '{')
	if depth > maxDepth || g.budget <= 0 {
		return append(buf, '}')
	}
	names := make([]string, 0, len(s.required))
	for _, n := range s.required {
		if !contains(names, n) {
			names = append(names, n)
		}
	}
	if s.minProperties != nil {
		for _, p := range s.props {
			if len(names) >= *s.minProperties {
				break
			}
			if !contains(names, p.name) {
				names = append(names, p.name)
			}
		}
	}
	if skip != "" && len(override) > 0 && !contains(names, skip) {
		names = append(names, skip)
	}
	first := true
	for _, n := range names {
		if n == skip && len(override) == 0 {
			continue
		}
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = jsonstr.Append(buf, n, false)
		buf = append(buf, ':')
		if n == skip {
			buf = append(buf, override[0]...)
			continue
		}
		buf = g.value(buf, g.resolve(parseSchema(s.prop(n)), depth+1), depth+1, 0)
	}
	return append(buf, '}')
}

// value appends a value of s; variant > 0 asks for another value than
// the variants before it (array items with uniqueItems), where s allows.
func (g *gen) value(buf []byte, s *schema, depth, variant int) []byte {
	g.budget--
	if s.constVal != nil {
		return appendCompact(buf, s.constVal)
	}
	var ok []json.RawMessage
	for _, c := range append(append(append([]json.RawMessage(nil), s.examples...), s.def), s.enum...) {
		if len(c) > 0 && json.Valid(c) && typeAllowed(c, s.types) && (len(s.enum) == 0 || in(c, s.enum)) && !in(c, ok) {
			ok = append(ok, c)
		}
	}
	if len(ok) > 0 && (variant < len(ok) || len(s.enum) > 0) {
		return appendCompact(buf, ok[variant%len(ok)])
	}
	switch typeOf(s) {
	case "integer":
		return strconv.AppendInt(buf, int64(number(s, true, variant)), 10)
	case "number":
		return strconv.AppendFloat(buf, number(s, false, variant), 'g', -1, 64)
	case "boolean":
		return strconv.AppendBool(buf, variant%2 == 0)
	case "null":
		return append(buf, "null"...)
	case "array":
		return g.array(buf, s, depth)
	case "object":
		return g.object(buf, s, depth, "")
	}
	return jsonstr.Append(buf, sampleString(s, variant), false)
}

// array appends an array of s: its prefixItems, then items up to
// max(minItems, 1), within maxItems and the bounds.
func (g *gen) array(buf []byte, s *schema, depth int) []byte {
	buf = append(buf, '[')
	if depth > maxDepth || g.budget <= 0 {
		return append(buf, ']')
	}
	n := max(len(s.prefixItems), 1)
	if s.minItems != nil {
		n = max(n, *s.minItems)
	}
	if s.maxItems != nil {
		n = min(n, *s.maxItems)
	}
	if string(bytes.TrimSpace(s.items)) == "false" {
		n = min(n, len(s.prefixItems))
	}
	n = min(n, maxArrayItems)
	for i := range n {
		if g.budget <= 0 {
			break
		}
		if i > 0 {
			buf = append(buf, ',')
		}
		raw := s.items
		if i < len(s.prefixItems) {
			raw = s.prefixItems[i]
		}
		buf = g.value(buf, g.resolve(parseSchema(raw), depth+1), depth+1, i)
	}
	return append(buf, ']')
}

// typeOf is the type a value of s is made as: the first of its types that
// is not null (null when it is the only one), else what its keywords
// suggest, else "" (a string).
func typeOf(s *schema) string {
	for _, t := range s.types {
		if t != "null" {
			return t
		}
	}
	switch {
	case len(s.types) > 0:
		return "null"
	case len(s.props) > 0 || len(s.required) > 0 || s.minProperties != nil:
		return "object"
	case s.items != nil || len(s.prefixItems) > 0 || s.minItems != nil:
		return "array"
	case s.minimum != nil || s.maximum != nil || s.exclMinimum != nil || s.exclMaximum != nil || s.multipleOf != nil:
		return "number"
	}
	return ""
}

// formats are the samples of string formats, by format; variants add a
// number where the format allows.
var formats = map[string]func(v int) string{
	"date":          func(v int) string { return "2025-01-" + twoDigits(15+v%14) },
	"date-time":     func(v int) string { return "2025-01-" + twoDigits(15+v%14) + "T09:30:00Z" },
	"time":          func(v int) string { return "09:" + twoDigits(30+v%30) + ":00Z" },
	"email":         func(v int) string { return "user" + suffix(v) + "@example.com" },
	"idn-email":     func(v int) string { return "user" + suffix(v) + "@example.com" },
	"hostname":      func(v int) string { return "host" + suffix(v) + ".example.com" },
	"idn-hostname":  func(v int) string { return "host" + suffix(v) + ".example.com" },
	"ipv4":          func(v int) string { return "192.0.2." + strconv.Itoa(1+v%254) },
	"ipv6":          func(v int) string { return "2001:db8::" + strconv.FormatInt(int64(1+v%0xfffe), 16) },
	"uri":           func(v int) string { return "https://example.com/" + strings.TrimPrefix(suffix(v), "-") },
	"iri":           func(v int) string { return "https://example.com/" + strings.TrimPrefix(suffix(v), "-") },
	"uri-reference": func(v int) string { return "https://example.com/" + strings.TrimPrefix(suffix(v), "-") },
	"uuid":          func(v int) string { return "123e4567-e89b-42d3-a456-4266141740" + twoDigits(v%100) },
	"duration":      func(v int) string { return "P" + strconv.Itoa(1+v) + "D" },
}

func twoDigits(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

// suffix is "" for the first variant, "-2", "-3"… for the next.
func suffix(v int) string {
	if v == 0 {
		return ""
	}
	return "-" + strconv.Itoa(v+1)
}

// sampleString is a string of s's format, within its length bounds.
func sampleString(s *schema, variant int) string {
	out := "example" + suffix(variant)
	if f, ok := formats[s.format]; ok {
		out = f(variant)
	}
	if s.minLength != nil {
		if short := min(*s.minLength, maxStringLen) - utf8.RuneCountInString(out); short > 0 {
			out += strings.Repeat("x", short)
		}
	}
	if s.maxLength != nil && utf8.RuneCountInString(out) > *s.maxLength {
		out = string([]rune(out)[:max(*s.maxLength, 0)])
	}
	return out
}

// number is a number of s: 1 (plus variant) moved into its bounds, then
// onto a multiple of multipleOf.
func number(s *schema, integer bool, variant int) float64 {
	v := 1 + float64(variant)
	lo, hi := math.Inf(-1), math.Inf(1)
	if s.minimum != nil {
		lo = *s.minimum
	}
	if s.maximum != nil {
		hi = *s.maximum
	}
	// An exclusive bound is met by a step inside it: 1 for integers, a
	// fraction of the room for numbers.
	step := 1.0
	if s.exclMinimum != nil && s.exclMaximum != nil && !integer {
		step = (*s.exclMaximum - *s.exclMinimum) / 4
	}
	if s.exclMinimum != nil {
		e := *s.exclMinimum + step
		if integer {
			e = math.Floor(*s.exclMinimum) + 1
		}
		lo = math.Max(lo, e)
	}
	if s.exclMaximum != nil {
		e := *s.exclMaximum - step
		if integer {
			e = math.Ceil(*s.exclMaximum) - 1
		}
		hi = math.Min(hi, e)
	}
	if integer {
		lo, hi = math.Ceil(lo), math.Floor(hi)
	}
	v = math.Min(math.Max(v, lo), hi)
	if m := s.multipleOf; m != nil && *m > 0 {
		if up := math.Ceil(v / *m) * *m; up <= hi {
			v = up
		} else {
			v = math.Floor(v / *m) * *m
		}
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > 1<<53 {
		return 1
	}
	return v
}

// jsonType is the JSON Schema type of a JSON value; a number without a
// fraction is an integer.
func jsonType(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return ""
	}
	switch v[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err == nil && f == math.Trunc(f) {
		return "integer"
	}
	return "number"
}

// typeAllowed reports whether v has one of types (any, when there are
// none); an integer is a number.
func typeAllowed(v json.RawMessage, types []string) bool {
	if len(types) == 0 {
		return true
	}
	t := jsonType(v)
	for _, want := range types {
		if want == t || want == "number" && t == "integer" {
			return true
		}
	}
	return false
}

// sameJSON reports whether two JSON texts are the same but for spaces.
func sameJSON(a, b json.RawMessage) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var ca, cb bytes.Buffer
	return json.Compact(&ca, a) == nil && json.Compact(&cb, b) == nil && bytes.Equal(ca.Bytes(), cb.Bytes())
}

func in(v json.RawMessage, list []json.RawMessage) bool {
	for _, x := range list {
		if sameJSON(v, x) {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func appendCompact(buf []byte, v json.RawMessage) []byte {
	var out bytes.Buffer
	if json.Compact(&out, v) != nil {
		return append(buf, "null"...)
	}
	return append(buf, out.Bytes()...)
}
