package agentstream

import "maps"

// Apply returns t with u applied as Store.UpdateThread does: Title
// replaced when set, Metadata merged key by key (a nil value removes the
// key; no key left is nil metadata), UpdatedAt set. t's metadata map is
// not modified. Stores share it so that they merge alike.
func (u ThreadUpdate) Apply(t Thread) Thread {
	if u.Title != nil {
		t.Title = *u.Title
	}
	if len(u.Metadata) > 0 {
		merged := maps.Clone(t.Metadata)
		if merged == nil {
			merged = make(map[string]any, len(u.Metadata))
		}
		for k, v := range u.Metadata {
			if v == nil {
				delete(merged, k)
			} else {
				merged[k] = v
			}
		}
		if len(merged) == 0 {
			merged = nil
		}
		t.Metadata = merged
	}
	t.UpdatedAt = u.UpdatedAt
	return t
}
