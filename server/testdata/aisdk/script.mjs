// The AI SDK's own client code (DefaultChatTransport, which useChat uses,
// and readUIMessageStream) reading agentstream's UI message stream, in
// ai 5.0.0 (whose chunk schema is strict) and the newest major. Run by
// server/aisdk_test.go; prints one JSON object.
//
//   node script.mjs golden <dir>   each <dir>/ui-*.sse, served as a response
//   node script.mjs chat <url>     /api/chat of the server at <url>
import { readFile, readdir } from "node:fs/promises";
import * as ai5 from "ai5";
import * as ai7 from "ai7";

const clients = { ai5, ai7 };
const [mode, arg] = process.argv.slice(2);

// lastMessage reads a stream of chunks to its end with readUIMessageStream
// and returns the last message it assembled, and the errors it reported.
async function lastMessage(lib, stream, onMessage) {
  const errors = [];
  let message = null;
  for await (const m of lib.readUIMessageStream({ stream, onError: (e) => errors.push(String(e)) })) {
    message = structuredClone(m);
    if (onMessage && (await onMessage(message))) break;
  }
  return { message, errors };
}

function user(text) {
  return { id: "u-" + Math.random().toString(36).slice(2), role: "user", parts: [{ type: "text", text }] };
}

async function golden(dir) {
  const out = {};
  for (const file of (await readdir(dir)).filter((f) => f.startsWith("ui-")).sort()) {
    const body = await readFile(`${dir}/${file}`);
    out[file] = {};
    for (const [name, lib] of Object.entries(clients)) {
      const transport = new lib.DefaultChatTransport({
        api: "http://golden.invalid/api/chat",
        fetch: async () => new Response(body, { headers: { "content-type": "text/event-stream", "x-vercel-ai-ui-message-stream": "v1" } }),
      });
      try {
        const stream = await transport.sendMessages({ chatId: "c", messages: [user("hi")], trigger: "submit-message", abortSignal: undefined });
        out[file][name] = await lastMessage(lib, stream);
      } catch (e) {
        out[file][name] = { thrown: String(e) };
      }
    }
  }
  return out;
}

async function chat(url) {
  const out = {};
  for (const [name, lib] of Object.entries(clients)) {
    const r = (out[name] = {});
    const runIds = [];
    const transport = new lib.DefaultChatTransport({
      api: url + "/api/chat",
      fetch: async (input, init) => {
        const resp = await fetch(input, init);
        runIds.push(resp.headers.get("x-run-id"));
        return resp;
      },
    });
    const question = user("What is the current_time?");

    // A whole answer.
    let stream = await transport.sendMessages({ chatId: `full-${name}`, messages: [question], trigger: "submit-message", abortSignal: undefined });
    r.full = await lastMessage(lib, stream);
    r.fullRunId = runIds.at(-1);

    // A request dropped mid-answer (a page reload), then useChat's resume.
    const abort = new AbortController();
    stream = await transport.sendMessages({ chatId: `resume-${name}`, messages: [question], trigger: "submit-message", abortSignal: abort.signal });
    // Dropped at the first part: the run has its whole answer to go.
    r.dropped = await lastMessage(lib, stream, (m) => m.parts.length > 0);
    r.droppedRunId = runIds.at(-1);
    abort.abort();
    const resumed = await transport.reconnectToStream({ chatId: `resume-${name}` });
    r.resumed = resumed ? await lastMessage(lib, resumed) : null;
    r.resumedRunId = runIds.at(-1);
    // After the run's end there is nothing to resume.
    r.afterEnd = (await transport.reconnectToStream({ chatId: `resume-${name}` })) === null ? "null" : "a stream";

    // What agentstream does not support yet surfaces as the client's error.
    try {
      await transport.sendMessages({ chatId: `full-${name}`, messages: [question], trigger: "regenerate-message", messageId: "x", abortSignal: undefined });
      r.regenerate = "accepted";
    } catch (e) {
      r.regenerate = String(e);
    }
  }
  return out;
}

const result = mode === "golden" ? await golden(arg) : await chat(arg);
process.stdout.write(JSON.stringify(result));
