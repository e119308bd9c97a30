// The official openai npm package as a client of /v1 (run by test_openai_js.py under node).
// Usage: node openai_client.cjs RESULT_FILE   (env: BASE_URL, API_KEY, MODEL)
const fs = require("fs");
const OpenAI = require("openai");

async function main() {
  const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: process.env.API_KEY,
                              maxRetries: 0, timeout: 30000 });
  const result = {};
  const models = [];
  for await (const model of client.models.list()) models.push(model);
  result.models = models.map((m) => ({ id: m.id, object: m.object, owned_by: m.owned_by }));

  const completion = await client.chat.completions.create({
    model: process.env.MODEL,
    messages: [{ role: "system", content: "Be brief." },
               { role: "user", content: [{ type: "text", text: "hi" }] }],
    max_completion_tokens: 32,
  });
  result.completion = { object: completion.object, content: completion.choices[0].message.content,
                        finish_reason: completion.choices[0].finish_reason,
                        usage: completion.usage };

  const stream = await client.chat.completions.create({
    model: process.env.MODEL, stream: true, stream_options: { include_usage: true },
    messages: [{ role: "user", content: "hi" }],
  });
  let text = "";
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks += 1;
    if (chunk.choices.length) text += chunk.choices[0].delta.content || "";
    if (chunk.usage) usage = chunk.usage;
  }
  result.stream = { text, usage, chunks };

  try {
    await client.chat.completions.create({ model: "no-such-model",
                                           messages: [{ role: "user", content: "hi" }] });
    result.error = null;
  } catch (err) {
    result.error = { name: err.constructor.name, status: err.status, code: err.code,
                     type: err.type };
  }
  const stranger = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: "cs-wrong",
                                maxRetries: 0 });
  try {
    await stranger.models.list();
    result.unauthorized = null;
  } catch (err) {
    result.unauthorized = { name: err.constructor.name, status: err.status, code: err.code };
  }
  fs.writeFileSync(process.argv[2], JSON.stringify(result));
}

main().catch((err) => { console.error(err); process.exit(1); });
