// The official openai npm client against agentstream, for
// server/openai_node_test.go: argv[2] is the base URL (…/v1), argv[3] the
// API key. Prints one JSON object with what each call gave.
import OpenAI from "openai";

const [, , baseURL, apiKey] = process.argv;
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30000 });
const out = {};

// Streamed, with usage, from an agent that calls a tool.
const stream = await client.chat.completions.create({
  model: "tester",
  messages: [
    { role: "user", content: "My name is Ada." },
    { role: "assistant", content: "Hello Ada." },
    { role: "user", content: "Work out the due_date, please." },
  ],
  stream: true,
  stream_options: { include_usage: true },
});
out.stream = { roles: [], content: "", finish: null, usage: null, ids: new Set() };
for await (const chunk of stream) {
  out.stream.ids.add(chunk.id);
  const c = chunk.choices[0];
  if (!c) {
    out.stream.usage = chunk.usage;
    continue;
  }
  if (c.delta.role) out.stream.roles.push(c.delta.role);
  out.stream.content += c.delta.content ?? "";
  if (c.finish_reason) out.stream.finish = c.finish_reason;
}
out.stream.ids = [...out.stream.ids];

// Whole, bound to a thread.
const { data: whole, response } = await client.chat.completions
  .create({ model: "tester", messages: [{ role: "user", content: "Hi there." }] }, { headers: { "X-Thread-Id": "node-conv" } })
  .withResponse();
out.whole = { content: whole.choices[0].message.content, finish: whole.choices[0].finish_reason, usage: whole.usage, thread: response.headers.get("x-thread-id") };

// The models are the agents.
out.models = (await client.models.list()).data.map((m) => m.id);

// Errors raise the library's classes.
out.errors = {};
for (const [name, req, opts] of [
  ["unknown_model", { model: "gpt-nope", messages: [{ role: "user", content: "hi" }] }],
  ["client_tools", { model: "tester", messages: [{ role: "user", content: "hi" }], tools: [{ type: "function", function: { name: "mine" } }] }],
  ["bad_key", { model: "tester", messages: [{ role: "user", content: "hi" }] }, { headers: { Authorization: "Bearer wrong" } }],
]) {
  try {
    await client.chat.completions.create(req, opts);
    out.errors[name] = "no error";
  } catch (e) {
    out.errors[name] = {
      class: e.constructor.name,
      notFound: e instanceof OpenAI.NotFoundError,
      badRequest: e instanceof OpenAI.BadRequestError,
      auth: e instanceof OpenAI.AuthenticationError,
      status: e.status,
      type: e.type,
      message: e.message,
    };
  }
}
process.stdout.write(JSON.stringify(out));
