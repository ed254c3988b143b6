package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/cpustat"
	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/packages/ssestream"
)

const benchChunks = 1000

// realisticBody is a stream of n text chunks shaped like OpenAI's (with
// service_tier, system_fingerprint, logprobs and obfuscation), then the
// finish chunk, the usage chunk and [DONE].
func realisticBody(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `data: {"id":"chatcmpl-BXq7dZ2pVf8yJkq3mN1rT0aLwE9sH","object":"chat.completion.chunk","created":1747000000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_0392822090","choices":[{"index":0,"delta":{"content":" tok%d"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"7uK2x"}`+"\n\n", i)
	}
	b.WriteString(`data: {"id":"chatcmpl-BXq7dZ2pVf8yJkq3mN1rT0aLwE9sH","object":"chat.completion.chunk","created":1747000000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_0392822090","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null,"obfuscation":"Qm"}` + "\n\n")
	b.WriteString(`data: {"id":"chatcmpl-BXq7dZ2pVf8yJkq3mN1rT0aLwE9sH","object":"chat.completion.chunk","created":1747000000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_0392822090","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":1000,"total_tokens":1020,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"obfuscation":"a"}` + "\n\n")
	b.WriteString("data: [DONE]\n\n")
	return b.Bytes()
}

// memTransport answers every request with body, without a network.
type memTransport struct{ body []byte }

func (t memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{
		StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Content-Type": {"text/event-stream"}},
		Body:    io.NopCloser(bytes.NewReader(t.body)),
		Request: r,
	}, nil
}

// perChunk reports the cost of each of benchChunks chunks: wall and CPU
// time (getrusage: all goroutines, and less inflated than wall time by a
// busy machine), allocations.
func perChunk(b *testing.B, run func()) {
	b.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu := cpustat.Of(b)
	b.ResetTimer()
	for range b.N {
		run()
	}
	b.StopTimer()
	used := cpustat.Of(b) - cpu
	runtime.ReadMemStats(&after)
	n := float64(b.N) * benchChunks
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/chunk")
	b.ReportMetric(float64(used.Nanoseconds())/n, "cpu-ns/chunk")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/n, "allocs/chunk")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/n, "B/chunk")
}

// BenchmarkStreamChunks measures Model.Stream per streamed chunk: over an
// in-memory transport (client cost alone) and over a real local HTTP
// connection (plus net/http on both ends). The decode sub-benchmarks split
// the in-memory cost, SSE decoding and chunk unmarshalling alone:
// lean-own is the decoder Stream uses (sseReader, decodeChunkFast with
// its encoding/json fallback); lean-own-encoding-json the same SSE reader
// with encoding/json only, into a reused chunk; openai-go the decoder of
// NewStreaming, which Stream used before; lean-encoding-json openai-go's
// SSE decoder with encoding/json into a fresh lean struct.
func BenchmarkStreamChunks(b *testing.B) {
	body := realisticBody(benchChunks)
	req := simpleRequest()
	var sink int
	onDelta := func(d agentstream.ModelDelta) { sink += len(d.Text) }
	check := func(res agentstream.ModelResult, err error) {
		if err != nil || res.FinishReason != "stop" || res.Usage.OutputTokens != 1000 {
			b.Fatalf("res %+v, err %v", res.FinishReason, err)
		}
	}

	b.Run("Stream/inmemory", func(b *testing.B) {
		m, err := New(Config{APIKey: "k", HTTPClient: &http.Client{Transport: memTransport{body}}})
		if err != nil {
			b.Fatal(err)
		}
		perChunk(b, func() { check(m.Stream(context.Background(), req, onDelta)) })
	})

	b.Run("Stream/httptest", func(b *testing.B) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write(body)
		}))
		defer srv.Close()
		m, err := New(Config{APIKey: "k", BaseURL: srv.URL + "/v1"})
		if err != nil {
			b.Fatal(err)
		}
		perChunk(b, func() { check(m.Stream(context.Background(), req, onDelta)) })
	})

	resp := func() *http.Response {
		return &http.Response{
			Header: http.Header{"Content-Type": {"text/event-stream"}},
			Body:   io.NopCloser(bytes.NewReader(body)),
		}
	}

	b.Run("decode/openai-go", func(b *testing.B) {
		perChunk(b, func() {
			s := ssestream.NewStream[oai.ChatCompletionChunk](ssestream.NewDecoder(resp()), nil)
			for s.Next() {
				c := s.Current()
				if len(c.Choices) > 0 {
					sink += len(c.Choices[0].Delta.Content)
				}
			}
			if s.Err() != nil {
				b.Fatal(s.Err())
			}
		})
	})

	b.Run("decode/lean-own", func(b *testing.B) {
		perChunk(b, func() {
			d := newChunkDecoder(bytes.NewReader(body))
			for {
				c, err := d.next()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				if len(c.Choices) > 0 {
					sink += len(c.Choices[0].Delta.Content)
				}
			}
		})
	})

	b.Run("decode/lean-own-encoding-json", func(b *testing.B) {
		perChunk(b, func() {
			r := newSSEReader(bytes.NewReader(body))
			var c chunk
			for {
				data, err := r.next()
				if err == io.EOF || bytes.HasPrefix(data, []byte("[DONE]")) {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				c.reset()
				if err := json.Unmarshal(data, &c); err != nil {
					b.Fatal(err)
				}
				if len(c.Choices) > 0 {
					sink += len(c.Choices[0].Delta.Content)
				}
			}
		})
	})

	type leanChunk struct {
		Choices []struct {
			Index int `json:"index"`
			Delta struct {
				Content   string `json:"content"`
				ToolCalls []struct {
					Index    int    `json:"index"`
					ID       string `json:"id"`
					Function struct {
						Name      string `json:"name"`
						Arguments string `json:"arguments"`
					} `json:"function"`
				} `json:"tool_calls"`
			} `json:"delta"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage *struct {
			PromptTokens     int64 `json:"prompt_tokens"`
			CompletionTokens int64 `json:"completion_tokens"`
		} `json:"usage"`
	}
	b.Run("decode/lean-encoding-json", func(b *testing.B) {
		perChunk(b, func() {
			d := ssestream.NewDecoder(resp())
			for d.Next() {
				data := d.Event().Data
				if bytes.HasPrefix(data, []byte("[DONE]")) {
					break
				}
				var c leanChunk
				if err := json.Unmarshal(data, &c); err != nil {
					b.Fatal(err)
				}
				if len(c.Choices) > 0 {
					sink += len(c.Choices[0].Delta.Content)
				}
			}
		})
	})
	_ = sink
}
