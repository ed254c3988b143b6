package config

import (
	"reflect"

	"github.com/goccy/go-yaml/ast"
)

// dict decodes a mapping into a map with string keys (http.headers,
// tools[].parameters), each entry placed at its key, so that a problem
// with one entry (an unset ${VAR} in a header) names its line.
func (d *decoder) dict(n ast.Node, v reflect.Value, path string) {
	if v.Type().Key().Kind() != reflect.String {
		d.fail(n, path, "a mapping with keys other than names is not a setting")
		return
	}
	var pairs []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		pairs = m.Values
	case *ast.MappingValueNode:
		pairs = []*ast.MappingValueNode{m}
	default:
		d.fail(n, path, "want a mapping (name: value lines), not %s", d.show(n))
		return
	}
	out := reflect.MakeMapWithSize(v.Type(), len(pairs))
	d.eachKey(pairs, path, func(m ast.Node) { d.mergeDict(m, out, path) }, func(mv *ast.MappingValueNode, key, p string) {
		d.record(p, mv.Key)
		e := reflect.New(v.Type().Elem()).Elem()
		d.value(mv.Value, e, p)
		out.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), e)
	})
	v.Set(out)
}

// mergeDict adds a merge key's mappings (<<: *anchor, or a list of them,
// the first winning) to the map out.
func (d *decoder) mergeDict(n ast.Node, out reflect.Value, path string) {
	n, ok := d.resolve(n, path)
	if !ok {
		return
	}
	if s, ok := n.(*ast.SequenceNode); ok {
		for i := len(s.Values) - 1; i >= 0; i-- {
			d.mergeDict(s.Values[i], out, path)
		}
		return
	}
	m := reflect.New(out.Type()).Elem()
	d.dict(n, m, path)
	for it := m.MapRange(); it.Next(); {
		out.SetMapIndex(it.Key(), it.Value())
	}
}
