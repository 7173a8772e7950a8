// The Node `openai` SDK and the Vercel AI SDK (`ai` + `@ai-sdk/openai`) against the real gateway
// binary (AI_GATEWAY_BIN) serving the built-in mock provider: chat completions and the Responses
// API, whole and streamed. Run by scripts/test.sh (`npm ci && npm test` in tests/node).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, openSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import net from "node:net";

import OpenAI from "openai";
import { generateText, streamText } from "ai";
import { createOpenAI } from "@ai-sdk/openai";

const KEY = "sk-test-node-0001";
let gateway;
let baseURL;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitHealthy(url, proc) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`ai-gateway exited with ${proc.exitCode}`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      // not yet listening
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`ai-gateway did not answer ${url} within 30 s`);
}

before(async () => {
  const bin = process.env.AI_GATEWAY_BIN;
  assert.ok(bin, "AI_GATEWAY_BIN must point at a built ai-gateway binary");
  const dir = mkdtempSync(join(tmpdir(), "aigw-node-"));
  const port = await freePort();
  const config = {
    server: { listen: `127.0.0.1:${port}` },
    providers: [{ name: "local", type: "mock" }],
    models: [{ name: "mock", deployments: [{ provider: "local", model: "mock" }] }],
    auth: { keys: [{ name: "node", key: KEY, models: ["*"] }] },
  };
  writeFileSync(join(dir, "gateway.json"), JSON.stringify(config));
  const log = openSync(join(dir, "gateway.log"), "w");
  const env = { ...process.env };
  for (const k of ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "AI_GATEWAY_CONFIG", "OPENAI_API_KEY"]) delete env[k];
  gateway = spawn(bin, ["--config", join(dir, "gateway.json")], { cwd: dir, env, stdio: ["ignore", log, log] });
  await waitHealthy(`http://127.0.0.1:${port}/health`, gateway);
  baseURL = `http://127.0.0.1:${port}/v1`;
});

after(() => {
  if (gateway && gateway.exitCode === null) gateway.kill("SIGTERM");
});

const client = () => new OpenAI({ apiKey: KEY, baseURL, maxRetries: 0 });
const provider = () => createOpenAI({ apiKey: KEY, baseURL });

test("openai: chat.completions.create, whole and streamed", async () => {
  const c = await client().chat.completions.create({
    model: "mock",
    messages: [{ role: "user", content: "hello from node" }],
  });
  assert.equal(c.choices[0].message.content, "hello from node");
  assert.ok(c.usage.total_tokens > 0);
  const stream = await client().chat.completions.create({
    model: "mock",
    messages: [{ role: "user", content: "streamed words here" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let usage = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? "";
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, "streamed words here");
  assert.ok(usage && usage.completion_tokens > 0);
});

test("openai: responses.create, output_text, previous_response_id and stream", async () => {
  const r = await client().responses.create({ model: "mock", input: "first turn", instructions: "be brief" });
  assert.equal(r.object, "response");
  assert.equal(r.status, "completed");
  assert.equal(r.output_text, "first turn");
  const next = await client().responses.create({ model: "mock", input: "second turn", previous_response_id: r.id });
  assert.equal(next.output_text, "second turn");
  const got = await client().responses.retrieve(r.id);
  assert.equal(got.id, r.id);
  const stream = client().responses.stream({ model: "mock", input: "stream this please" });
  const types = [];
  let deltas = "";
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === "response.output_text.delta") deltas += ev.delta;
  }
  const final = await stream.finalResponse();
  assert.equal(deltas, "stream this please");
  assert.equal(final.output_text, "stream this please");
  assert.equal(types[0], "response.created");
  assert.equal(types.at(-1), "response.completed");
});

test("Vercel AI SDK: openai(model) (Responses API), whole and streamed", async () => {
  const { text, usage } = await generateText({ model: provider()("mock"), prompt: "vercel responses" });
  assert.equal(text, "vercel responses");
  assert.ok(usage.outputTokens > 0);
  const result = streamText({ model: provider()("mock"), prompt: "vercel streamed responses" });
  let streamed = "";
  for await (const part of result.textStream) streamed += part;
  assert.equal(streamed, "vercel streamed responses");
});

test("Vercel AI SDK: openai.chat(model) (chat completions), whole and streamed", async () => {
  const { text } = await generateText({ model: provider().chat("mock"), prompt: "vercel chat" });
  assert.equal(text, "vercel chat");
  const result = streamText({ model: provider().chat("mock"), prompt: "vercel streamed chat" });
  let streamed = "";
  for await (const part of result.textStream) streamed += part;
  assert.equal(streamed, "vercel streamed chat");
});
