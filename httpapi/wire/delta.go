package wire

import (
	"bytes"
	"encoding/json"

	"github.com/agentstream/agentstream"
	"github.com/agentstream/agentstream/internal/jsonstr"
)

// DecodeDelta decodes the data of a message.delta event, made once per
// streamed token, without reflection: it appends the delta's text to dst
// and returns it with the message id. The data agentstream makes
// ({"message_id":"…","delta":"…"}, NewDeltaEvent) is parsed by hand; any
// other valid JSON falls back to encoding/json, with the same result.
// msgID is only valid until dst's next use when it was unescaped; ok is
// false when data is not a delta's JSON.
func DecodeDelta(dst, data []byte) (text, msgID []byte, ok bool) {
	const head, mid = `{"message_id":"`, `,"delta":"`
	if rest, found := bytes.CutPrefix(data, []byte(head)); found {
		if id, rest, ok := jsonstr.Body(rest); ok && jsonstr.Plain(id) {
			if rest, found := bytes.CutPrefix(rest, []byte(mid)); found {
				if body, rest, ok := jsonstr.Body(rest); ok && len(rest) == 1 && rest[0] == '}' {
					if out, ok := jsonstr.Unquote(dst, body); ok {
						return out, id, true
					}
				}
			}
		}
	}
	var d agentstream.MessageDeltaData
	if json.Unmarshal(data, &d) != nil {
		return dst, nil, false
	}
	return append(dst, d.Delta...), []byte(d.MessageID), true
}
