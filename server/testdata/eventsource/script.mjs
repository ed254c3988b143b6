// A browser-style client of a run's native stream, for
// server/eventsource_test.go.
//
//   node script.mjs <GET /v1/runs/{id}/events URL> [timeout ms] [stay]
//
// It opens one WHATWG EventSource (the npm package eventsource) on the URL,
// records every event of every native type, counts `open` events, and closes
// on the terminal event. When the connection breaks it does nothing itself:
// the EventSource reconnects on its own, sending Last-Event-ID. It prints one
// JSON object on stdout:
//
//   {"opens": 2, "errors": ["terminated"],
//    "events": [{"lastEventId": "1", "type": "run.created", "data": "{…}", "conn": 1}, …],
//    "terminal": "run.completed", "timedOut": false}
//
// `conn` is the number of opens seen when the event arrived. It exits 0 once
// a terminal event arrived, 1 when the timeout passed first.
//
// With `stay`, it keeps the EventSource open past the terminal event, as a
// page that never calls close() would: the EventSource reconnects when the
// server ends the stream, and stops only when an answer tells it to (204
// No Content closes it). Then it exits 0 with "closed": true; 1 when the
// timeout passed first.
import {EventSource} from 'eventsource'

const url = process.argv[2]
const timeoutMs = Number(process.argv[3] || 30000)
const stay = process.argv[4] === 'stay'
if (!url) {
  process.stderr.write('usage: node script.mjs <events URL> [timeout ms]\n')
  process.exit(2)
}

// Every event type of the native stream (docs/protocol.md).
const types = [
  'run.created',
  'run.queued',
  'run.started',
  'step.started',
  'message.delta',
  'tool.arguments.delta',
  'tool.call',
  'tool.result',
  'message.completed',
  'step.completed',
  'run.completed',
  'run.failed',
  'run.cancelled',
  'run.interrupted',
]
const terminal = new Set(['run.completed', 'run.failed', 'run.cancelled', 'run.interrupted'])

const result = {opens: 0, errors: [], events: [], terminal: null, timedOut: false, closed: false}

function finish(code) {
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(code))
}

const es = new EventSource(url)
const timer = setTimeout(() => {
  result.timedOut = true
  es.close()
  finish(1)
}, timeoutMs)

es.addEventListener('open', () => {
  result.opens++
})
es.addEventListener('error', (ev) => {
  // A break the EventSource will reconnect from (readyState CONNECTING), or
  // a failed connection it gives up on (CLOSED).
  result.errors.push(`${ev.message ?? 'error'}${es.readyState === EventSource.CLOSED ? ' (closed)' : ''}`)
  if (es.readyState === EventSource.CLOSED) {
    result.closed = true
    clearTimeout(timer)
    finish(stay && result.terminal ? 0 : 1)
  }
})

function record(ev) {
  result.events.push({lastEventId: ev.lastEventId, type: ev.type, data: ev.data, conn: result.opens})
  if (terminal.has(ev.type)) {
    result.terminal = ev.type
    if (stay) {
      return
    }
    es.close()
    clearTimeout(timer)
    finish(0)
  }
}
for (const type of types) {
  es.addEventListener(type, record)
}
// Events without an event: field (the server sends none) are recorded too.
es.addEventListener('message', record)
