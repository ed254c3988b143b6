package openai

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"strconv"
	"testing"
)

// firstSpecial is the position of the first byte of w (little-endian)
// that ends a string's run of ordinary bytes, 8 for none; withHigh counts
// bytes from 0x80 too, as key does.
func firstSpecial(w uint64, withHigh bool) int {
	for i := range 8 {
		c := byte(w >> (8 * i))
		if c < ' ' || c == '"' || c == '\\' || (withHigh && c >= 0x80) {
			return i
		}
	}
	return 8
}

// specials finds the first special byte of a word exactly, whatever the
// bytes around it (borrows mark only bytes above it): every byte value
// at every position among ordinary bytes, then random words, many of
// them with several special bytes.
func TestSpecials(t *testing.T) {
	check := func(w uint64) {
		t.Helper()
		if got, want := bits.TrailingZeros64(specials(w))>>3, firstSpecial(w, false); got != want {
			t.Fatalf("specials(%#016x): first special byte %d, want %d", w, got, want)
		}
		if got, want := bits.TrailingZeros64(specials(w)|w&highs)>>3, firstSpecial(w, true); got != want {
			t.Fatalf("specials(%#016x)|high bits: first special byte %d, want %d", w, got, want)
		}
	}
	for _, filler := range []byte{'a', ' ', '!', '#', '[', ']', 0x7f, 0x80, 0xff} {
		for c := range 256 {
			for pos := range 8 {
				var b [8]byte
				for i := range b {
					b[i] = filler
				}
				b[pos] = byte(c)
				check(binary.LittleEndian.Uint64(b[:]))
			}
		}
	}
	pick := []byte{0, 1, 0x1f, ' ', '!', '"', '#', '[', '\\', ']', 'a', 0x7f, 0x80, 0xa2, 0xdc, 0xff}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		w := r.Uint64()
		if r.IntN(2) == 0 {
			var b [8]byte
			for i := range b {
				b[i] = pick[r.IntN(len(pick))]
			}
			w = binary.LittleEndian.Uint64(b[:])
		}
		check(w)
	}
}

// A stream's chunks are parsed from the end of the head they share with
// the chunk before, and a head that changes (Ollama's created, from one
// second to the next) is kept anew; a chunk whose first member is kept
// (llama.cpp's choices) keeps no head.
func TestChunkHead(t *testing.T) {
	head := func(created int) string {
		return `{"id":"chatcmpl-123","object":"chat.completion.chunk","created":` + strconv.Itoa(created) + `,"model":"llama3.2",`
	}
	seq := []struct{ data, head string }{
		{head(1747000000) + `"choices":[{"index":0,"delta":{"content":"a"}}]}`, head(1747000000)},
		{head(1747000000) + `"choices":[{"index":0,"delta":{"content":"b"}}]}`, head(1747000000)},
		{head(1747000001) + `"choices":[{"index":0,"delta":{"content":"c"}}]}`, head(1747000001)},
		{head(1747000001) + `"x":1,"choices":[{"index":0,"delta":{"content":"d"}}]}`, head(1747000001) + `"x":1,`},
		{head(1747000001) + `"choices":[],"y":2}`, head(1747000001)},
		{`{"choices":[{"index":0,"delta":{"content":"e"}}],"id":"x"}`, head(1747000001)},
	}
	var st fastState
	for i, s := range seq {
		var c chunk
		if !decodeChunkFast([]byte(s.data), &c, &st) {
			t.Fatalf("chunk %d: fast path refused %s", i, s.data)
		}
		if string(st.head) != s.head {
			t.Errorf("chunk %d: head %q, want %q", i, st.head, s.head)
		}
	}
	var st2 fastState
	var c chunk
	if !decodeChunkFast([]byte(seq[5].data), &c, &st2) || len(st2.head) != 0 {
		t.Errorf("llama.cpp's order: head %q, want none", st2.head)
	}
}
