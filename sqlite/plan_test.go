package sqlite

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestActiveRunQueriesUseIndexes: the statements that look for queued and
// running runs read an index of those runs only, and the fold of an
// interruption's parts starts from the parts, on a database whose runs are
// all indexed by the migrations (no runs_status since 00008, no ANALYZE):
// none reads every run or every message. The statements are store.go's
// (interrupt, RenewLeases, the limits' count, FinishRun).
func TestActiveRunQueriesUseIndexes(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "plan.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	const active = `status IN ('queued', 'running')`
	const lease = ` AND lease_until IS NOT NULL AND lease_until < 5`
	for _, q := range []string{
		`SELECT id, user_id FROM runs WHERE ` + active + ` ORDER BY created_at, id`,
		`SELECT id, user_id FROM runs WHERE ` + active + lease + ` ORDER BY created_at, id`,
		`UPDATE runs SET status = 'interrupted', owner = '', lease_until = NULL WHERE ` + active,
		`UPDATE runs SET status = 'interrupted', owner = '', lease_until = NULL WHERE ` + active + lease,
		`UPDATE runs SET lease_until = 5 WHERE owner = 'o' AND ` + active,
		`SELECT count(*) FROM runs WHERE user_id = 'u' AND ` + active,
		`UPDATE runs SET status = 'completed' WHERE id = 'r' AND ` + active,
		`UPDATE messages SET content = content || (
			SELECT string_agg(p.text, '' ORDER BY p.pos) FROM message_parts p WHERE p.message_id = messages.id)
		WHERE id IN (
			SELECT p.message_id FROM message_parts p
			CROSS JOIN messages m ON m.id = p.message_id CROSS JOIN runs r ON r.id = m.run_id
			WHERE r.status = 'interrupted' AND m.status = 'partial')`,
	} {
		plan := queryPlan(t, s, q)
		if bad := wholeScan(plan); bad != "" {
			t.Errorf("%s\nreads a whole table: %q\nplan:\n%s", q, bad, plan)
		}
	}
}

// scanLine matches a plan's full scan of runs or messages (or their
// aliases r and m), and what it scans with.
var scanLine = regexp.MustCompile(`^SCAN (runs|messages|r|m)\b(.*)$`)

// wholeScan returns the plan's line that reads all of runs or messages:
// a scan that is not of a partial index of active runs.
func wholeScan(plan string) string {
	for line := range strings.SplitSeq(plan, "\n") {
		m := scanLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		if !strings.Contains(m[2], "runs_one_active_per_thread") && !strings.Contains(m[2], "runs_user_active") {
			return line
		}
	}
	return ""
}

func TestWholeScan(t *testing.T) {
	for plan, want := range map[string]string{
		"SCAN runs USING INDEX runs_user_active\nUSE TEMP B-TREE FOR ORDER BY":  "",
		"SEARCH runs USING INDEX runs_status (status=?)":                        "",
		"SCAN p\nSEARCH m USING INDEX sqlite_autoindex_messages_1 (id=?)":       "",
		"LIST SUBQUERY 2\nSCAN m\nSEARCH r USING INDEX sqlite_autoindex_runs_1": "SCAN m",
		"SCAN runs": "SCAN runs",
	} {
		if got := wholeScan(plan); got != want {
			t.Errorf("wholeScan(%q) = %q, want %q", plan, got, want)
		}
	}
}

// queryPlan is EXPLAIN QUERY PLAN's lines for q.
func queryPlan(t testing.TB, s *Store, q string) string {
	t.Helper()
	rows, err := s.w.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer func() { _ = rows.Close() }() // rows.Err is checked below
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}
