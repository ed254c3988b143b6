package wire

import (
	"net/http"

	"github.com/agentstream/agentstream"
)

// native is the v1 wire format: every event with its id, type and JSON
// payload as stored in the log.
type native struct{}

// NewNative makes an encoder of the native format. It keeps no state.
func NewNative(Stream) Encoder { return native{} }

func (native) Header(h http.Header) { SSEHeader(h) }

func (native) Start(buf []byte) []byte { return append(buf, ": ok\n\n"...) }

func (native) Heartbeat(buf []byte) []byte { return append(buf, ": heartbeat\n\n"...) }

// End is nothing: the terminal event is the end.
func (native) End(buf []byte) []byte { return buf }

func (native) Encode(buf []byte, ev agentstream.Event) []byte {
	buf = AppendID(buf, ev.Seq)
	buf = append(buf, "event: "...)
	buf = append(buf, ev.Type...)
	buf = append(buf, "\ndata: "...)
	buf = append(buf, ev.Data...)
	return append(buf, "\n\n"...)
}
