// An AG-UI client of agentstream, for server/agui_test.go.
//
//   node script.mjs <POST /ag-ui/{agent} URL> <threadId> <question> [<question>…]
//
// It runs the agent once per question with @ag-ui/client's HttpAgent (the
// conversation so far sent each time, as AG-UI clients do), with one
// context entry, and checks every event it receives against @ag-ui/core's
// own schema (EventSchemas). It prints one JSON object on stdout:
//
//   {"runs": [{"runId": "…", "events": [{"type": "RUN_STARTED", "valid": true, …}],
//              "newMessages": […], "error": null}],
//    "messages": [the agent's messages after the last run]}
//
// and exits 0; 1 on a usage error.
import {HttpAgent} from '@ag-ui/client'
import {EventSchemas} from '@ag-ui/core/schemas'

const [url, threadId, ...questions] = process.argv.slice(2)
if (!url || !threadId || questions.length === 0) {
  process.stderr.write('usage: node script.mjs <url> <threadId> <question>…\n')
  process.exit(1)
}

const agent = new HttpAgent({url, threadId})
const runs = []
for (const [i, q] of questions.entries()) {
  agent.addMessage({id: `user-${i + 1}`, role: 'user', content: q})
  const runId = `client-run-${i + 1}`
  const events = []
  let error = null
  let newMessages = []
  try {
    const result = await agent.runAgent(
      {runId, context: [{description: 'baby_name', value: 'Robin'}]},
      {
        onEvent({event}) {
          const parsed = EventSchemas.safeParse(event)
          events.push({...event, valid: parsed.success, issues: parsed.success ? undefined : parsed.error.issues})
        },
      },
    )
    newMessages = result.newMessages
  } catch (e) {
    error = String(e && e.message ? e.message : e)
  }
  runs.push({runId, events, newMessages, error})
}
process.stdout.write(JSON.stringify({runs, messages: agent.messages}))
