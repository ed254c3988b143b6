package sim

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/agentstream/agentstream/internal/jsonstr"
)

// chunker encodes the SSE chunks of one streamed reply into a reused
// buffer. head is everything of a chunk object before "choices", shared by
// every chunk of the reply.
type chunker struct {
	head []byte // data: {"id":"…","object":"chat.completion.chunk","created":N,"model":"…",
	buf  []byte
}

func newChunker(id string, created int64, model string) *chunker {
	h := make([]byte, 0, 128+len(model))
	h = append(h, `data: {"id":`...)
	h = jsonstr.Append(h, id, false)
	h = append(h, `,"object":"chat.completion.chunk","created":`...)
	h = strconv.AppendInt(h, created, 10)
	h = append(h, `,"model":`...)
	h = jsonstr.Append(h, model, false)
	h = append(h, ',')
	return &chunker{head: h, buf: make([]byte, 0, 512)}
}

const (
	choiceOpen  = `"choices":[{"index":0,"delta":`
	choiceClose = `,"finish_reason":null}]}` + "\n\n"
)

func (c *chunker) start() []byte {
	c.buf = append(c.buf[:0], c.head...)
	return append(c.buf, choiceOpen...)
}

// role is the first chunk: the assistant role and empty content.
func (c *chunker) role() []byte {
	b := c.start()
	b = append(b, `{"role":"assistant","content":""}`...)
	c.buf = append(b, choiceClose...)
	return c.buf
}

// content is a chunk of text.
func (c *chunker) content(tok string) []byte {
	b := c.start()
	b = append(b, `{"content":`...)
	b = jsonstr.Append(b, tok, false)
	b = append(b, '}')
	c.buf = append(b, choiceClose...)
	return c.buf
}

// toolStart opens tool call index with its id and name.
func (c *chunker) toolStart(index int, id, name string) []byte {
	b := c.start()
	b = append(b, `{"tool_calls":[{"index":`...)
	b = strconv.AppendInt(b, int64(index), 10)
	b = append(b, `,"id":`...)
	b = jsonstr.Append(b, id, false)
	b = append(b, `,"type":"function","function":{"name":`...)
	b = jsonstr.Append(b, name, false)
	b = append(b, `,"arguments":""}}]}`...)
	c.buf = append(b, choiceClose...)
	return c.buf
}

// toolArgs is a piece of tool call index's arguments.
func (c *chunker) toolArgs(index int, piece string) []byte {
	b := c.start()
	b = append(b, `{"tool_calls":[{"index":`...)
	b = strconv.AppendInt(b, int64(index), 10)
	b = append(b, `,"function":{"arguments":`...)
	b = jsonstr.Append(b, piece, false)
	b = append(b, `}}]}`...)
	c.buf = append(b, choiceClose...)
	return c.buf
}

// finish is the last choice chunk: an empty delta and the finish reason.
func (c *chunker) finish(reason string) []byte {
	b := c.start()
	b = append(b, `{},"finish_reason":`...)
	b = jsonstr.Append(b, reason, false)
	c.buf = append(b, "}]}\n\n"...)
	return c.buf
}

// usage is the chunk with no choices that carries the usage.
func (c *chunker) usage(u usage) []byte {
	b := append(c.buf[:0], c.head...)
	b = append(b, `"choices":[],"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(u.PromptTokens), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(u.CompletionTokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(u.TotalTokens), 10)
	c.buf = append(b, "}}\n\n"...)
	return c.buf
}

const doneChunk = "data: [DONE]\n\n"

// The non-streamed reply.
type (
	completion struct {
		ID      string   `json:"id"`
		Object  string   `json:"object"`
		Created int64    `json:"created"`
		Model   string   `json:"model"`
		Choices []choice `json:"choices"`
		Usage   usage    `json:"usage"`
	}
	choice struct {
		Index        int             `json:"index"`
		Message      responseMessage `json:"message"`
		FinishReason string          `json:"finish_reason"`
		Logprobs     *struct{}       `json:"logprobs"`
	}
	responseMessage struct {
		Role      string             `json:"role"`
		Content   *string            `json:"content"`
		Refusal   *string            `json:"refusal"`
		ToolCalls []responseToolCall `json:"tool_calls,omitempty"`
	}
	responseToolCall struct {
		ID       string       `json:"id"`
		Type     string       `json:"type"`
		Function wireFunction `json:"function"`
	}
	usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	}
)

// errorBody is OpenAI's error response.
type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		// Only the types above are written; they always encode.
		panic("sim: encoding response: " + err.Error())
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

func writeError(w http.ResponseWriter, e *apiError) {
	var body errorBody
	body.Error.Message = e.Message
	body.Error.Type = e.Type
	if e.Param != "" {
		body.Error.Param = &e.Param
	}
	if e.Code != "" {
		body.Error.Code = &e.Code
	}
	writeJSON(w, e.Status, body)
}
