// What a browser app on another origin does with agentstream (see
// drive.mjs): create a thread and start a run with fetch (an Authorization
// header, so CORS preflights), read the start of the run's stream and
// leave; get a run token, and resume the run from the last event read with
// an EventSource, which cannot send Authorization, through ?token=. When
// the connection breaks, the EventSource reconnects on its own with
// Last-Event-ID; it closes on the terminal event.
'use strict'

const TYPES = ['run.created', 'run.queued', 'run.started', 'step.started', 'step.completed', 'message.delta',
  'tool.arguments.delta', 'tool.call', 'tool.result', 'message.completed',
  'run.completed', 'run.failed', 'run.cancelled', 'run.interrupted']
const TERMINAL = ['run.completed', 'run.failed', 'run.cancelled', 'run.interrupted']

// parseSSE splits text into complete events; it returns them and the rest.
function parseSSE (text) {
  const events = []
  let i
  while ((i = text.indexOf('\n\n')) >= 0) {
    const block = text.slice(0, i)
    text = text.slice(i + 2)
    const ev = { id: '', type: 'message', data: [] }
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue
      const k = line.indexOf(':')
      const name = k < 0 ? line : line.slice(0, k)
      const value = k < 0 ? '' : line.slice(k + 1).replace(/^ /, '')
      if (name === 'id') ev.id = value
      else if (name === 'event') ev.type = value
      else if (name === 'data') ev.data.push(value)
    }
    if (ev.data.length > 0) events.push({ id: ev.id, type: ev.type, data: ev.data.join('\n') })
  }
  return [events, text]
}

// agentstreamDemo runs it all; a: {api, stream, key, read, timeoutMs}.
// api is agentstream's URL for fetch, stream its URL for the EventSource
// (through the test's cutting proxy), read the events to read with fetch.
window.agentstreamDemo = async function (a) {
  const out = { fetched: [], resumed: [], opens: 0, errors: 0 }
  const auth = { Authorization: 'Bearer ' + a.key }
  const json = { ...auth, 'Content-Type': 'application/json' }

  let resp = await fetch(a.api + '/v1/threads', { method: 'POST', headers: json, body: '{"title": "from a page"}' })
  if (resp.status !== 201) throw new Error('POST /v1/threads: ' + resp.status + ' ' + await resp.text())
  out.threadId = (await resp.json()).id

  const leave = new AbortController()
  resp = await fetch(a.api + '/v1/threads/' + out.threadId + '/runs', {
    method: 'POST', headers: json, body: '{"input": "hello from a page"}', signal: leave.signal
  })
  if (resp.status !== 200) throw new Error('POST runs: ' + resp.status + ' ' + await resp.text())
  out.runId = resp.headers.get('X-Run-Id') // readable: exposed by CORS
  out.threadHeader = resp.headers.get('X-Thread-Id')
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader()
  let rest = ''
  while (out.fetched.length < a.read) {
    const { value, done } = await reader.read()
    if (done) break
    let evs;
    [evs, rest] = parseSSE(rest + value)
    out.fetched.push(...evs)
  }
  out.fetched = out.fetched.slice(0, a.read)
  leave.abort() // the run goes on (on_disconnect: continue)

  resp = await fetch(a.api + '/v1/runs/' + out.runId + '/token', { method: 'POST', headers: auth })
  if (resp.status !== 200) throw new Error('POST token: ' + resp.status + ' ' + await resp.text())
  const { token, expires_at: expiresAt } = await resp.json()
  out.expiresAt = expiresAt

  // EventSource cannot send Last-Event-ID on its first open: ?after= says
  // where to go on from; on a reconnection it sends Last-Event-ID itself.
  const last = out.fetched[out.fetched.length - 1].id
  const url = a.stream + '/v1/runs/' + out.runId + '/events?after=' + encodeURIComponent(last) + '&token=' + encodeURIComponent(token)
  await new Promise((resolve, reject) => {
    const es = new EventSource(url)
    const timer = setTimeout(() => { es.close(); reject(new Error('timed out; resumed ' + out.resumed.length + ' events')) }, a.timeoutMs)
    es.onopen = () => { out.opens++ }
    es.onerror = () => {
      out.errors++
      if (es.readyState === EventSource.CLOSED) { clearTimeout(timer); reject(new Error('the EventSource closed after ' + out.resumed.length + ' events')) }
    }
    for (const type of TYPES) {
      es.addEventListener(type, (e) => {
        out.resumed.push({ id: e.lastEventId, type, data: e.data, opens: out.opens })
        if (TERMINAL.includes(type)) { es.close(); clearTimeout(timer); resolve() }
      })
    }
  })
  return out
}
