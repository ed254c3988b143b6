package config

import (
	"fmt"
	"sort"
	"strings"
)

// A Problem is one thing wrong with a configuration, placed where a person
// can fix it.
type Problem struct {
	// Source is where the value came from: the config file's name, or an
	// override's origin ("env AGENTSTREAM_ADDR", "flag --addr"). Empty
	// when unknown (a Config built in code, or a file read without a name).
	Source string
	// Line and Col are 1-based; 0 when the problem has no place in the
	// file (a value set by an override, or a default).
	Line, Col int
	// Path is the setting, as in the file: "runs.tool_timeout",
	// "agents[1].tools[0]". Empty for the file as a whole.
	Path string
	// Message says what is wrong and, where it can, what to write instead.
	Message string
}

// String formats p as a compiler does: "agentstream.yaml:4:3:
// runs.tool_timeout: 30 is not a duration; …", so editors can jump to it.
func (p Problem) String() string {
	var b strings.Builder
	switch {
	case p.Line > 0 && p.Source != "":
		fmt.Fprintf(&b, "%s:%d:", p.Source, p.Line)
	case p.Line > 0:
		fmt.Fprintf(&b, "line %d:", p.Line)
	case p.Source != "":
		b.WriteString(p.Source + ":")
	}
	if p.Line > 0 && p.Col > 0 {
		fmt.Fprintf(&b, "%d:", p.Col)
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Problems is every problem found in a configuration, sorted by line (those
// without a line last). As an error it prints one problem per line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sort orders ps by place: by line and column, those without a line after
// the others, in the order they were found.
func (ps Problems) sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if (a.Line == 0) != (b.Line == 0) {
			return b.Line == 0
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// err returns ps as an error: nil when there are none, so that a caller's
// err != nil means a problem.
func (ps Problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	ps.sort()
	return ps
}
