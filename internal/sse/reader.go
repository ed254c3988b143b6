// Package sse reads Server-Sent Events streams as the WHATWG HTML standard
// defines them (section 9.2, "Server-sent events"): fields id, event, data
// and retry, comments, CR/LF/CRLF line ends, and events dispatched at a
// blank line. The tests and the load generator read agentstream's streams
// with it, so they check the wire format, not an approximation of it.
package sse

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
)

// Event is one dispatched event.
type Event struct {
	// ID is the last event ID in force when the event was dispatched.
	ID string
	// Type is the event field, or "message" when the event has none.
	Type string
	// Data is the data lines joined with "\n".
	Data string
}

// Reader reads events from a stream.
type Reader struct {
	r       *bufio.Reader
	started bool
	lastID  string
	// Retry is the last reconnection time the stream set, in milliseconds
	// (-1 when none).
	Retry int
	// Comments counts comment lines (such as heartbeats) read so far.
	Comments int
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 16<<10), Retry: -1}
}

// Next returns the next event. At the end of the stream it returns io.EOF;
// an event not ended by a blank line is discarded, as the standard says.
func (r *Reader) Next() (Event, error) {
	var (
		typ     string
		data    bytes.Buffer
		hasData bool
	)
	for {
		line, err := r.readLine()
		if err != nil {
			return Event{}, err
		}
		if len(line) == 0 {
			if !hasData {
				typ = "" // an event with no data is not dispatched
				continue
			}
			ev := Event{ID: r.lastID, Type: typ, Data: data.String()}
			if ev.Type == "" {
				ev.Type = "message"
			}
			return ev, nil
		}
		if line[0] == ':' {
			r.Comments++
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "event":
			typ = string(value)
		case "data":
			if hasData {
				data.WriteByte('\n')
			}
			data.Write(value)
			hasData = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				r.lastID = string(value)
			}
		case "retry":
			if n, err := strconv.Atoi(string(value)); err == nil && n >= 0 && isDigits(value) {
				r.Retry = n
			}
		}
	}
}

// readLine returns one line without its end (CRLF, LF or CR).
func (r *Reader) readLine() ([]byte, error) {
	var line []byte
	for {
		b, err := r.r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && len(line) > 0 {
				// A last line without its end is incomplete: the event it
				// belongs to is never dispatched.
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if !r.started {
			r.started = true
			// A leading byte order mark is skipped.
			if b == 0xEF {
				if bom, err := r.r.Peek(2); err == nil && bom[0] == 0xBB && bom[1] == 0xBF {
					_, _ = r.r.Discard(2)
					continue
				}
			}
		}
		switch b {
		case '\n':
			return line, nil
		case '\r':
			if next, err := r.r.Peek(1); err == nil && next[0] == '\n' {
				_, _ = r.r.Discard(1)
			}
			return line, nil
		}
		line = append(line, b)
	}
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}
