package openai

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/agentstream/agentstream/internal/cpustat"
)

// streamShapes are the text chunks of a stream as servers send them, a
// different token in each: decodeChunk meets the same head (id, model…)
// chunk after chunk, and a token of a few bytes.
var streamShapes = []struct {
	name string
	of   func(tok string) string
}{
	{"openai", func(tok string) string {
		return `{"id":"chatcmpl-BXq7dZ2pVf8yJkq3mN1rT0aLwE9sH","object":"chat.completion.chunk","created":1747000000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_0392822090","choices":[{"index":0,"delta":{"content":"` + tok + `"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"7uK2x"}`
	}},
	{"sim", func(tok string) string {
		return `{"id":"chatcmpl-sim-4f1c2a9b","object":"chat.completion.chunk","created":1747000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"` + tok + `"},"finish_reason":null}]}`
	}},
	{"vllm", func(tok string) string {
		return `{"id":"chatcmpl-8c2b1f0e6f0a4a7e9b5d3c2a1f0e9d8c","object":"chat.completion.chunk","created":1747000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":"` + tok + `"},"logprobs":null,"finish_reason":null,"stop_reason":null}]}`
	}},
	{"ollama", func(tok string) string {
		return `{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1747000000,"model":"llama3.2","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":"` + tok + `"},"finish_reason":null}]}`
	}},
	{"llamacpp", func(tok string) string {
		return `{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"` + tok + `"}}],"created":1747000000,"id":"chatcmpl-Xr2m9sQ4bWcZ1aKpL7vT3yN8eD0fG6hJ","model":"gpt-3.5-turbo","system_fingerprint":"b5000-8a9b7c6d","object":"chat.completion.chunk"}`
	}},
}

// BenchmarkDecodeChunk measures decodeChunk alone per chunk of each
// server's shape, one decoder reused as a stream reuses it: wall and CPU
// time (getrusage, which a busy machine does not inflate as much),
// allocations.
func BenchmarkDecodeChunk(b *testing.B) {
	for _, sh := range streamShapes {
		b.Run(sh.name, func(b *testing.B) {
			const n = 64
			chunks := make([][]byte, n)
			for i := range chunks {
				chunks[i] = []byte(sh.of(fmt.Sprintf(" tok%d", i)))
			}
			var (
				c    chunk
				st   fastState
				sink int
				ms0  runtime.MemStats
				ms1  runtime.MemStats
			)
			runtime.ReadMemStats(&ms0)
			cpu := cpustat.Of(b)
			b.ResetTimer()
			for i := range b.N {
				if err := decodeChunk(chunks[i%n], &c, &st); err != nil {
					b.Fatal(err)
				}
				sink += len(c.Choices[0].Delta.Content)
			}
			b.StopTimer()
			used := cpustat.Of(b) - cpu
			runtime.ReadMemStats(&ms1)
			b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/chunk")
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N), "allocs/chunk")
			_ = sink
		})
	}
}
