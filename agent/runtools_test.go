package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/agentstream/agentstream"
)

// namedTool is a tool that only has a name.
type namedTool struct{ name string }

func (t namedTool) Spec() agentstream.ToolSpec { return agentstream.ToolSpec{Name: t.name} }
func (t namedTool) Call(context.Context, json.RawMessage) (string, error) {
	return t.name, nil
}

// TestRunToolsFind: a run's tools are found by name, a name taken is not
// added again, and the specs keep the order the tools came in, whether
// there are few (scanned) or many (in a map, made once they are many).
func TestRunToolsFind(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, mapTools, mapTools + 1, 3 * mapTools} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var rt runTools
			for i := range n {
				tool := namedTool{fmt.Sprintf("t%d", i)}
				if !rt.add(tool, tool.Spec()) {
					t.Fatalf("tool %d refused", i)
				}
				// A second tool of a name taken is refused.
				if rt.add(namedTool{"other"}, agentstream.ToolSpec{Name: tool.name}) {
					t.Fatalf("a second %s was added", tool.name)
				}
			}
			if len(rt.specs) != n || len(rt.tools) != n {
				t.Fatalf("%d specs and %d tools, want %d", len(rt.specs), len(rt.tools), n)
			}
			for i := range n {
				name := fmt.Sprintf("t%d", i)
				if rt.specs[i].Name != name {
					t.Errorf("spec %d is %q, want %q", i, rt.specs[i].Name, name)
				}
				if got, ok := rt.find(name); !ok || got.(namedTool).name != name {
					t.Errorf("find(%q) = %v, %v", name, got, ok)
				}
			}
			if got, ok := rt.find("missing"); ok {
				t.Errorf("find(missing) = %v", got)
			}
		})
	}
}
