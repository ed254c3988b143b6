package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Environment variables in the config file.
//
// A setting whose field has an `expand` tag may reference environment
// variables as ${NAME}; Load replaces each with the variable's value after
// the YAML is parsed, so a value never changes the file's structure. No
// other setting is expanded (an agent's instructions keep "${" as
// written). The tag applies to a string field and to the strings of a
// list or a map field, and to those of the structs below it:
//
//	expand:"plain"   the values are not secret (a URL)
//	expand:"secret"  what a variable brought in is a secret (a header
//	                 value, an env of an MCP server): "Bearer ${TOKEN}"
//	                 makes the token a secret
//	expand:"key"     the whole value is a secret, however it was written
//	                 (an API key)
//
// Secrets (Config.Secrets) never appear in logs, events, errors or the
// API, and are masked in what tools answer.
//
// The syntax, in an expanded setting:
//
//	${NAME}          the variable's value; unset is a problem at its line
//	${NAME:-text}    the variable's value, or text when it is unset or empty
//	$$               a literal $ ($${NAME} is the text ${NAME})
//	$ otherwise      itself ("pa$word" stays as written)
//
// NAME is letters, digits and _, not starting with a digit.

// expandTag is the struct tag that marks expanded settings.
const expandTag = "expand"

// Expansion modes, the expand tag's values.
const (
	expandPlain  = "plain"
	expandSecret = "secret"
	expandKey    = "key"
)

// expand replaces the ${NAME} references of the settings tagged expand,
// with lookup's values, and records the secrets they bring in. Each
// problem is placed at its setting's line.
func (c *Config) expand(lookup func(string) (string, bool)) Problems {
	var probs Problems
	walkExpanded(reflect.ValueOf(c).Elem(), "", "", func(v reflect.Value, path, mode string) {
		if c.src.failedAt(path) {
			return
		}
		out, found, errs := expandString(v.String(), lookup)
		for _, e := range errs {
			p := c.src.place(path)
			p.Message = e
			probs = append(probs, p)
			// What the value then runs into in Validate is not news.
			c.src.failed[path] = true
		}
		v.SetString(out)
		if mode != expandPlain {
			c.src.secrets = append(c.src.secrets, found...)
		}
	})
	return probs
}

// Secrets returns the configured secrets: the whole value of every
// setting tagged expand:"key" (API keys, however they were set: the file,
// a ${VAR}, an environment override), and what a ${VAR} brought into a
// setting tagged expand:"secret" (header values). Empty values are left
// out.
func (c Config) Secrets() []string {
	var out []string
	if c.src != nil {
		out = append(out, c.src.secrets...)
	}
	walkExpanded(reflect.ValueOf(&c).Elem(), "", "", func(v reflect.Value, _, mode string) {
		if mode == expandKey {
			out = append(out, v.String())
		}
	})
	out = slices.DeleteFunc(out, func(s string) bool { return s == "" })
	slices.Sort(out)
	return slices.Compact(out)
}

// walkExpanded calls f with every string setting below v (at path) that
// an expand tag marks, with its mode; mode is the tag inherited from
// above. Map values are set back after f, as they cannot be set in place.
func walkExpanded(v reflect.Value, path, mode string, f func(v reflect.Value, path, mode string)) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			walkExpanded(v.Elem(), path, mode, f)
		}
	case reflect.Struct:
		if v.Type() == durationType {
			return
		}
		for _, fd := range fieldsOf(v.Type()) {
			m := mode
			if tag, ok := v.Type().FieldByIndex(fd.index).Tag.Lookup(expandTag); ok {
				m = tag
			}
			walkExpanded(v.FieldByIndex(fd.index), joinPath(path, fd.name), m, f)
		}
	case reflect.Slice:
		for i := range v.Len() {
			walkExpanded(v.Index(i), fmt.Sprintf("%s[%d]", path, i), mode, f)
		}
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return
		}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			before := v.MapIndex(k).Interface()
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			walkExpanded(e, joinPath(path, k.String()), mode, f)
			// Only a change is written: a walk that reads (Secrets) must
			// not write to a map its Config shares with others.
			if !reflect.DeepEqual(before, e.Interface()) {
				v.SetMapIndex(k, e)
			}
		}
	case reflect.String:
		if mode != "" {
			f(v, path, mode)
		}
	}
}

// expandString expands s: the result, the values its variables brought
// in, and what was wrong, one message per mistake. A mistaken reference
// is left as written.
func expandString(s string, lookup func(string) (string, bool)) (string, []string, []string) {
	if !strings.Contains(s, "$") {
		return s, nil, nil
	}
	var (
		b     strings.Builder
		found []string
		errs  []string
	)
	for i := 0; i < len(s); {
		switch {
		case s[i] != '$':
			b.WriteByte(s[i])
			i++
		case strings.HasPrefix(s[i:], "$$"):
			b.WriteByte('$')
			i += 2
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				errs = append(errs, "a ${ without its closing }: write ${NAME}, or $${ for the text ${")
				b.WriteString(s[i:])
				i = len(s)
				break
			}
			ref := s[i : i+2+end+1]
			i += len(ref)
			name, def, hasDef := strings.Cut(ref[2:len(ref)-1], ":-")
			if !validVarName(name) {
				errs = append(errs, fmt.Sprintf("%s does not name a variable: a name is letters, digits and _, not starting with a digit (write $$ for a literal $)", ref))
				b.WriteString(ref)
				break
			}
			v, set := lookup(name)
			switch {
			case set && (v != "" || !hasDef):
				b.WriteString(v)
				found = append(found, v)
			case hasDef:
				b.WriteString(def)
			default:
				errs = append(errs, fmt.Sprintf("${%s} is not set in the environment: set %s, or write ${%s:-default} for a default (or $${%s} for the text itself)", name, name, name, name))
				b.WriteString(ref)
			}
		default:
			b.WriteByte('$')
			i++
		}
	}
	return b.String(), found, errs
}

// validVarName reports whether s is an environment variable name that
// ${...} accepts.
func validVarName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for _, c := range []byte(s) {
		if !(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}
