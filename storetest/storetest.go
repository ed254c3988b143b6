// Package storetest is a conformance suite for agentstream.Store
// implementations. A store's tests call Run with a function that opens a
// fresh, empty store:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t testing.TB) agentstream.Store {
//			s, err := mystore.Open(t.Context(), filepath.Join(t.TempDir(), "db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// Subtests run in parallel, each on its own store, so newStore must be
// safe to call concurrently. Run closes every store newStore returns
// (once); newStore must not close it.
//
// Besides what the Store interface documents, the suite holds stores to
// this contract:
//   - Times are kept to the microsecond: a time reads back equal to the
//     time written truncated to the microsecond (its location is free).
//   - Metadata and context maps round trip as JSON: values come back as
//     encoding/json decodes into any (float64, string, bool, nil, []any,
//     map[string]any). A map with no entries, nil or empty, reads back nil;
//     so do a message's ToolCalls when it has none.
//   - ListMessages of a thread without messages returns no messages and no
//     error; the slice may be nil or empty. So do ListMessagesAfter,
//     ListThreads and ListRuns when there is nothing to list.
//   - CreateRun stores every field of the run as given (a run may be created
//     running, with StartedAt, Owner and LeaseUntil), and ErrConflict when
//     the run's ID or the input message's ID exists; it writes nothing then.
//     It returns the input message with the run's ThreadID and RunID,
//     whatever the message said.
//   - CreateThreadRun stores the thread and the run as CreateThread and
//     CreateRun would (the thread's UpdatedAt is the run's CreatedAt), and
//     writes nothing, neither thread nor run, on any error: ErrConflict
//     for a taken thread ID, the limits' errors, ErrInvalid for a run not
//     of the thread (ThreadID or UserID) or a value no store keeps.
//   - CheckpointRun: ErrNotFound for an unknown run, ErrConflict for a
//     terminal or a queued one; it writes nothing then.
//   - CheckpointText: text appended in pieces reads back whole and exact
//     (multi-byte characters included), and readers meanwhile see a
//     prefix of the final text; a whole save (CheckpointRun, FinishRun,
//     CheckpointText at 0) replaces it, and an interruption keeps it. A
//     store's own tests also call CheckpointTextFolds, which counts the
//     rows it keeps for appended text.
//   - CheckpointRun and FinishRun: a message whose ID is taken by a message
//     of another run is ErrConflict, and nothing of the call is written.
//   - FinishRun: ErrNotFound for an unknown run; a queued run may be
//     finished (cancelled before it started); Owner and LeaseUntil are
//     cleared.
//   - ErrInvalid, with nothing written, for: CreateRun of a run that is
//     not queued or running; FinishRun with a status that is not terminal;
//     a metadata or context map that encoding/json cannot encode.
//   - Every store keeps the same values (agentstream.MaxIDBytes,
//     ValidText): CreateThread and CreateRun refuse with ErrInvalid, and
//     write nothing, an ID over MaxIDBytes bytes, text with a NUL or
//     invalid UTF-8, and a NUL in a map; an ID of MaxIDBytes bytes works
//     everywhere. A map's strings are stored as encoding/json writes them
//     (invalid UTF-8 as U+FFFD). CheckpointRun and FinishRun refuse
//     message IDs the same way, but do not check what the model or a tool
//     wrote (content, tool calls, the run's error): a store may refuse a
//     NUL or invalid UTF-8 there (PostgreSQL does, with ErrInvalid).
//   - A lookup (or update) by an ID or user that no store can hold (a NUL,
//     invalid UTF-8) is ErrNotFound, or nothing for ListMessages and
//     RenewLeases. Thread.ClientID round trips, and is not a key.
//   - A call whose context is done fails with an error that wraps the
//     context's error (errors.Is), and writes nothing.
//   - AddUsage refuses a user ID no store can hold with ErrInvalid.
//   - After Close, every method returns an error (and none panics).
//   - Every store is an agentstream.KeyStore too (group Keys).
package storetest

import (
	"testing"

	"github.com/agentstream/agentstream"
)

type suite struct {
	newStore func(t testing.TB) agentstream.Store
}

// Run runs the conformance suite against stores made by newStore.
func Run(t *testing.T, newStore func(t testing.TB) agentstream.Store) {
	s := suite{newStore: newStore}
	type test struct {
		name string
		fn   func(t *testing.T)
	}
	groups := []struct {
		name  string
		tests []test
	}{
		{"CreateThread", []test{
			{"RoundTrip", s.testCreateThreadRoundTrip},
			{"EmptyMaps", s.testCreateThreadEmptyMaps},
			{"DuplicateID", s.testCreateThreadDuplicateID},
			{"UnencodableMaps", s.testCreateThreadUnencodable},
		}},
		{"GetThread", []test{
			{"Missing", s.testGetThreadMissing},
			{"OtherUser", s.testGetThreadOtherUser},
		}},
		{"CreateRun", []test{
			{"ReturnsInputWithSeq", s.testCreateRunReturnsInput},
			{"WithHistory", s.testCreateRunWithHistory},
			{"SeqAcrossRuns", s.testCreateRunSeqAcrossRuns},
			{"UnknownThread", s.testCreateRunUnknownThread},
			{"OneActiveRunPerThread", s.testCreateRunOneActive},
			{"DuplicateIDs", s.testCreateRunDuplicateIDs},
			{"InputIDsFromRun", s.testCreateRunInputIDsFromRun},
			{"InvalidStatus", s.testCreateRunInvalidStatus},
			{"UnencodableContext", s.testCreateRunUnencodableContext},
		}},
		{"CreateThreadRun", []test{
			{"RoundTrip", s.testCreateThreadRun},
			{"Refused", s.testCreateThreadRunRefused},
		}},
		{"Limits", []test{
			{"UsageAddsUp", s.testUsageAddsUp},
			{"UsageRefused", s.testUsageRefused},
			{"UsageConcurrent", s.testUsageConcurrent},
			{"RunLimits", s.testRunLimits},
			{"RunLimitsConcurrent", s.testRunLimitsConcurrent},
		}},
		{"StartRun", []test{
			{"QueuedToRunning", s.testStartRun},
			{"UnknownRun", s.testStartRunUnknown},
			{"NotQueued", s.testStartRunNotQueued},
		}},
		{"CheckpointRun", []test{
			{"AppendsAndUpdates", s.testCheckpointRun},
			{"NoMessages", s.testCheckpointRunEmpty},
			{"UnknownRun", s.testCheckpointRunUnknown},
			{"FinishedRun", s.testCheckpointRunFinished},
			{"QueuedRun", s.testCheckpointRunQueued},
			{"ForeignThreadAndRunIDs", s.testCheckpointRunForeignIDs},
			{"MessageOfAnotherRun", s.testCheckpointRunMessageOfAnotherRun},
		}},
		{"CheckpointText", []test{
			{"Appends", s.testCheckpointTextAppends},
			{"ReplacedByWholeSaves", s.testCheckpointTextReplaced},
			{"Interrupted", s.testCheckpointTextInterrupted},
			{"Refused", s.testCheckpointTextRefused},
			{"SavedAgain", s.testCheckpointTextAgain},
			{"ConcurrentReaders", s.testCheckpointTextReaders},
		}},
		{"FinishRun", []test{
			{"Completed", s.testFinishRunCompleted},
			{"FailedWithError", s.testFinishRunFailed},
			{"QueuedRun", s.testFinishRunQueued},
			{"ClearsOwnerAndLease", s.testFinishRunClearsOwner},
			{"AlreadyTerminal", s.testFinishRunTerminal},
			{"UnknownRun", s.testFinishRunUnknown},
			{"NotTerminal", s.testFinishRunNotTerminal},
		}},
		{"EndSeq", []test{
			{"RecordedByFinishRun", s.testEndSeqFinished},
			{"SetWhenUnknown", s.testEndSeqUnknown},
			{"Refused", s.testEndSeqRefused},
		}},
		{"InterruptRuns", []test{
			{"EndsActiveRuns", s.testInterruptRuns},
			{"NothingActive", s.testInterruptRunsNone},
		}},
		{"Leases", []test{
			{"Renew", s.testRenewLeases},
			{"InterruptExpired", s.testInterruptExpired},
			{"InterruptExpiredDeadline", s.testInterruptExpiredDeadline},
			{"RenewWhileSweeping", s.testConcurrentRenewWhileSweeping},
		}},
		{"GetRun", []test{
			{"RoundTrip", s.testGetRunRoundTrip},
			{"Missing", s.testGetRunMissing},
			{"OtherUser", s.testGetRunOtherUser},
		}},
		{"ListMessages", []test{
			{"OrderAndFields", s.testListMessages},
			{"EmptyThread", s.testListMessagesEmpty},
			{"ManyInOrder", s.testListMessagesMany},
		}},
		{"ListThreads", []test{
			{"Order", s.testListThreadsOrder},
			{"PagesWhileCreating", s.testListThreadsConcurrent},
			{"Limit", s.testListThreadsLimit},
		}},
		{"UpdateThread", []test{
			{"TitleAndMetadata", s.testUpdateThread},
			{"Refused", s.testUpdateThreadRefused},
		}},
		{"DeleteThread", []test{
			{"LeavesNothing", s.testDeleteThread},
			{"ActiveRun", s.testDeleteThreadActiveRun},
		}},
		{"ListRuns", []test{
			{"OrderAndPages", s.testListRuns},
		}},
		{"ListMessagesAfter", []test{
			{"Pages", s.testListMessagesAfter},
		}},
		{"Times", []test{
			{"UTCMicroseconds", s.testTimesUTC},
		}},
		{"Concurrent", []test{
			{"CreateRunSameThread", s.testConcurrentCreateRun},
			{"RunsOnManyThreads", s.testConcurrentManyThreads},
			{"AppendsToSameThreads", s.testConcurrentAppends},
			{"CreateRunWhileFinishing", s.testConcurrentCreateWhileFinishing},
			{"FinishRunRace", s.testConcurrentFinishRace},
			{"CheckpointWhileFinishing", s.testConcurrentCheckpointWhileFinishing},
			{"StartRunRace", s.testConcurrentStartRunRace},
			{"InterruptWhileFinishing", s.testConcurrentInterruptWhileFinishing},
		}},
		{"Storable", []test{
			{"ClientID", s.testClientID},
			{"LongestID", s.testLongestID},
			{"RefusedThreads", s.testRefusedThreads},
			{"RefusedRuns", s.testRefusedRuns},
			{"RefusedMessageIDs", s.testRefusedMessageIDs},
			{"ImpossibleLookups", s.testImpossibleLookups},
			{"JSONAsEncoded", s.testJSONAsEncoded},
		}},
		{"Keys", []test{
			{"RoundTrip", s.testKeysRoundTrip},
			{"List", s.testKeysList},
			{"Revoke", s.testKeysRevoke},
			{"Refused", s.testKeysRefused},
			{"ConcurrentRevoke", s.testKeysConcurrentRevoke},
		}},
		{"Context", []test{
			{"Done", s.testContextDone},
		}},
		{"Ping", []test{
			{"Reachable", s.testPing},
		}},
		{"Close", []test{
			{"ThenPingFails", s.testClose},
			{"ThenCallsFail", s.testCloseThenCallsFail},
		}},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range g.tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.fn(t)
				})
			}
		})
	}
}
