package agentstream

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"time"
)

// Role is who wrote a message.
type Role string

// Message roles. RoleSystem only appears in model input, never in a thread.
const (
	RoleSystem    Role = "system"
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
	RoleTool      Role = "tool"
)

// MessageStatus says whether a message was written whole.
type MessageStatus string

// Message statuses: a partial message is what was produced before a run
// failed, was cancelled or was interrupted.
const (
	MessageComplete MessageStatus = "complete"
	MessagePartial  MessageStatus = "partial"
)

// RunStatus is where a run is in its life.
type RunStatus string

// Run statuses. The last four are terminal.
const (
	RunQueued      RunStatus = "queued"
	RunRunning     RunStatus = "running"
	RunCompleted   RunStatus = "completed"
	RunFailed      RunStatus = "failed"
	RunCancelled   RunStatus = "cancelled"
	RunInterrupted RunStatus = "interrupted"
)

// Terminal reports whether a run in this status has ended for good.
func (s RunStatus) Terminal() bool {
	switch s {
	case RunCompleted, RunFailed, RunCancelled, RunInterrupted:
		return true
	}
	return false
}

// Thread is a conversation owned by one user.
type Thread struct {
	// ID is the thread's key in the store, unique across users: a random
	// "thr_…" for a thread the server named, ThreadKey(UserID, ClientID)
	// for one whose id its user chose. Runs and messages refer to it.
	ID string `json:"id"`
	// ClientID is the id the user chose for the thread (POST /v1/chat's
	// thread_id), empty when the server named it. It is unique per user
	// only, so it is not the key; the API shows it as the thread's id.
	ClientID string `json:"-"`
	UserID   string `json:"user_id"`
	// Agent is the thread's default agent; a run may name another.
	Agent string `json:"agent"`
	Title string `json:"title"`
	// Metadata is the caller's own data, stored and returned as given.
	Metadata map[string]any `json:"metadata"`
	// Context is the default context of the thread's runs; a run's own
	// context keys override it.
	Context   map[string]any `json:"context"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
}

// PublicID is the id the thread's user knows it by: the id they chose,
// or its key when the server named it.
func (t Thread) PublicID() string {
	if t.ClientID != "" {
		return t.ClientID
	}
	return t.ID
}

// ThreadKey returns the key (Thread.ID) of the thread that user userID
// named clientID: "thr_" and the first 26 base32 characters (130 bits) of
// SHA-256(userID, NUL, clientID), the shape of a random thread id. A key
// per user is what lets two users each have a thread "hana-1", and no user
// claim another's id; being derived, it is found without an index of
// client ids, by any instance. Stored keys depend on it: it never changes.
// (clientID holds no NUL, so the input is unambiguous.)
func ThreadKey(userID, clientID string) string {
	h := sha256.New()
	h.Write([]byte(userID))
	h.Write([]byte{0})
	h.Write([]byte(clientID))
	return "thr_" + base32.StdEncoding.EncodeToString(h.Sum(nil))[:26]
}

// ToolCall is one call an assistant message asks for. Arguments is the
// model's text as it produced it: usually a JSON object, but a model can
// produce invalid JSON and the thread keeps what it said.
type ToolCall struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// Message is one entry of a thread.
type Message struct {
	ID       string `json:"id"`
	ThreadID string `json:"thread_id"`
	RunID    string `json:"run_id"`
	// Seq is the message's position in its thread, from 1 without gaps; the
	// store assigns it. (The runner relies on there being no gaps: a run
	// whose input has Seq n starts from the thread's n-1 earlier messages.)
	Seq     int64  `json:"seq"`
	Role    Role   `json:"role"`
	Content string `json:"content"`
	// ToolCalls is set on assistant messages that call tools.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// ToolCallID and ToolName are set on tool messages.
	ToolCallID string        `json:"tool_call_id,omitempty"`
	ToolName   string        `json:"tool_name,omitempty"`
	Status     MessageStatus `json:"status"`
	CreatedAt  time.Time     `json:"created_at"`
}

// Usage counts model tokens.
type Usage struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
}

// Add returns the sum of two usages.
func (u Usage) Add(o Usage) Usage {
	return Usage{InputTokens: u.InputTokens + o.InputTokens, OutputTokens: u.OutputTokens + o.OutputTokens}
}

// ErrorInfo is the error a run ended with, as stored and as streamed.
type ErrorInfo struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Run is one execution of an agent on a thread: one user input, then model
// turns and tool calls until an answer, a failure or a cancel.
type Run struct {
	ID       string    `json:"id"`
	ThreadID string    `json:"thread_id"`
	UserID   string    `json:"user_id"`
	Agent    string    `json:"agent"`
	Status   RunStatus `json:"status"`
	// Error is set when the run failed, was cancelled or was interrupted.
	Error *ErrorInfo `json:"error,omitempty"`
	Usage Usage      `json:"usage"`
	// Context is the merged context the agent's instructions were rendered with.
	Context    map[string]any `json:"context,omitempty"`
	CreatedAt  time.Time      `json:"created_at"`
	StartedAt  *time.Time     `json:"started_at,omitempty"`
	FinishedAt *time.Time     `json:"finished_at,omitempty"`
	// EndSeq is the Seq of the run's terminal event in its event log,
	// recorded with the run's end so that an end rebuilt from the store
	// has the id the log gave it; 0 while not known.
	EndSeq int64 `json:"-"`
	// Owner is the instance running the run and LeaseUntil how long its
	// claim holds; both are empty outside a running run.
	Owner      string     `json:"-"`
	LeaseUntil *time.Time `json:"-"`
}

// Agent is a configured agent: a model, instructions and tools.
type Agent struct {
	Name string `json:"name" yaml:"name"`
	// Description is shown to API users listing agents.
	Description string `json:"description,omitempty" yaml:"description"`
	// Model is the upstream model name; empty means the server's default model.
	Model string `json:"model,omitempty" yaml:"model"`
	// Instructions is a Go text/template rendered with the run's context
	// (for example {{.baby_name}}) and sent as the system message.
	Instructions string `json:"instructions,omitempty" yaml:"instructions"`
	// Endpoint names the model endpoint (a models[] entry) the agent's
	// model is called on; empty means the openai: block (or the simulator).
	Endpoint string `json:"endpoint,omitempty" yaml:"endpoint"`
	// Tools names the tools the agent may call: built-in ones, tools
	// declared in the config, and tools a Go program adds.
	Tools []string `json:"tools,omitempty" yaml:"tools"`
	// MCPServers names the tool sources (MCP servers) whose tools the agent
	// may call, under the names the source gives them.
	MCPServers []string `json:"mcp_servers,omitempty" yaml:"mcp_servers"`
	// Handoffs and RequireApproval are reserved for a later capability
	// (handing a run to another agent, approving tool calls); a config
	// that sets them is refused until then.
	Handoffs        []string `json:"-" yaml:"handoffs"`
	RequireApproval []string `json:"-" yaml:"require_approval"`
	// MaxTurns bounds the model calls of one run; default 10.
	MaxTurns int `json:"max_turns,omitempty" yaml:"max_turns"`
	// Temperature is passed to the model when set.
	Temperature *float64 `json:"temperature,omitempty" yaml:"temperature"`
}

// DefaultMaxTurns is an agent's MaxTurns when it sets none.
const DefaultMaxTurns = 10

// NewID returns a new random identifier with the given prefix, such as
// "run_". The random part has 130 bits and is URL-safe.
func NewID(prefix string) string { return prefix + rand.Text() }
