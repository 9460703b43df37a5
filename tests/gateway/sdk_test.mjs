// sdk_test.mjs - emads-gateway driven by the official SDKs (openai,
// @anthropic-ai/sdk, @langchain/openai in a LangGraph graph), unchanged
// except their base URL, key and default headers. gateway.sh starts the
// constellation, the test LLM server and the gateway, issues the keys and
// runs this file; see the environment it passes below.
//
// Each case uses its own key or task, so the ledger's numbers it checks are
// its own. Spend is read back through `emadsctl --json spend --task T`.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { ChatOpenAI } from '@langchain/openai';
import { StateGraph, MessagesAnnotation, START, END } from '@langchain/langgraph';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} must be set (run through gateway.sh)`);
  return v;
};
const GW = `http://${env('GW_ADDR')}`;
const LLM = `http://127.0.0.1:${env('LLM_PORT')}`;
const LLM_LOG = env('LLM_LOG');
// prices of the shipped config, micro-USD per 1M tokens
const PRICES = { 'gpt-4o-mini': [150000n, 600000n], 'gpt-4o': [2500000n, 10000000n] };

// cfg_model_cost: ceil((in * p_in + out * p_out) / 1e6)
function cost(model, inTok, outTok) {
  const [pi, po] = PRICES[model];
  const n = BigInt(inTok) * pi + BigInt(outTok) * po;
  return Number((n + 999999n) / 1000000n);
}

// the ledger's row of principal in task equals these calls' usage x prices:
// calls = [[model, input_tokens, output_tokens], ...]
async function assertCharged(task, principal, calls) {
  const tokens = calls.reduce((n, [, i, o]) => n + i + o, 0);
  const uusd = calls.reduce((n, [m, i, o]) => n + cost(m, i, o), 0);
  const s = await settled(task);
  assert.equal(agentRow(s, principal).used.tokens, tokens, `${task}: tokens`);
  assert.equal(agentRow(s, principal).used.cost_uusd, uusd, `${task}: cost`);
  return s;
}

function ctl(...args) {
  return execFileSync(env('EMADSCTL'), ['--home', env('E2E_RUN'), '--config', env('E2E_CONF'),
    ...args], { encoding: 'utf8' });
}
function spend(task) {
  return JSON.parse(ctl('--json', 'spend', '--task', task));
}
function agentRow(s, name) {
  return s.agents.find((a) => a.name === name);
}
// no account of the task (agents, task total, global) went past a limit
function assertNoOverspend(s, what) {
  for (const row of [...s.agents, s.total, ...(s.global ? [s.global] : [])])
    for (const dim of Object.keys(row.limit))
      if (row.limit[dim] >= 0)
        assert.ok(row.used[dim] + row.held[dim] <= row.limit[dim],
          `${what}: ${row.name} ${dim} used ${row.used[dim]} + held ${row.held[dim]} > limit ${row.limit[dim]}`);
}
// requests the test server logged (one line each, written when the answer
// is complete), optionally only those with `messages` messages: each case
// that counts uses a message count of its own, so a stream of an earlier
// case that the server logs late cannot be counted
function llmLines(messages) {
  return readFileSync(LLM_LOG, 'utf8').split('\n').filter((l) => l.trim())
    .filter((l) => messages === undefined || JSON.parse(l).messages === messages).length;
}
async function control(body) {
  const r = await fetch(`${LLM}/control`, { method: 'POST', body: JSON.stringify(body) });
  assert.equal(r.status, 200);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// poll until the task holds nothing (a commit may follow the client's end)
async function settled(task) {
  for (let i = 0; i < 100; i++) {
    const s = spend(task);
    if (s.total.held.tokens === 0) return s;
    await sleep(100);
  }
  throw new Error(`task ${task}: holds still open`);
}

const openai = (key, headers = {}, extra = {}) =>
  new OpenAI({ baseURL: `${GW}/v1`, apiKey: key, defaultHeaders: headers, ...extra });
const msgs = [{ role: 'user', content: 'Should we migrate the billing service to the new queue?' }];
const sys2 = [{ role: 'system', content: 'You are terse.' }, ...msgs];       // 2 messages
const turn4 = [...sys2, { role: 'assistant', content: 'Which queue?' },
  { role: 'user', content: 'The new one.' }];                                  // 4 messages

const cases = [];
const test = (name, fn) => cases.push([name, fn]);

test('openai SDK: calls succeed; spend equals usage x prices', async () => {
  const client = openai(env('KEY_SDK'), { 'x-emads-task': 'gw-sdk' });
  const calls = [];
  for (let i = 0; i < 3; i++) {
    const { data, response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: msgs, max_tokens: 200 }).withResponse();
    assert.ok(data.choices[0].message.content.length > 0);
    assert.ok(data.usage.prompt_tokens > 0 && data.usage.completion_tokens > 0);
    assert.match(response.headers.get('x-emads-remaining-usd'), /^\d+\.\d{6}$/);
    assert.equal(response.headers.get('x-emads-task'), 'gw-sdk');
    calls.push(['gpt-4o-mini', data.usage.prompt_tokens, data.usage.completion_tokens]);
  }
  const s = await assertCharged('gw-sdk', 'cto_agent', calls);
  assert.equal(s.total.used.cost_uusd, agentRow(s, 'cto_agent').used.cost_uusd);
  // the task was opened with gateway.per_task_budget (5.00 USD)
  assert.equal(s.total.limit.cost_uusd, 5000000);
});

test('models: GET /v1/models lists the configured models', async () => {
  const list = await openai(env('KEY_SDK')).models.list();
  const ids = list.data.map((m) => m.id).sort();
  assert.deepEqual(ids, ['gpt-4o', 'gpt-4o-mini']);
});

test('tool calls: a response that calls tools counts one tool call; a request offering tools holds one', async () => {
  const client = openai(env('KEY_SDK'), { 'x-emads-task': 'gw-tools' });
  const tools = [{ type: 'function', function: { name: 'lookup_vendor', description: 'Look a vendor up',
    parameters: { type: 'object', properties: { name: { type: 'string' } } } } }];
  const r = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: msgs, tools, max_tokens: 100 });
  assert.equal(r.choices[0].message.tool_calls?.[0]?.function?.name, 'lookup_vendor');
  await client.chat.completions.create({ model: 'gpt-4o-mini', messages: msgs, max_tokens: 100 });
  const s = await settled('gw-tools');
  assert.equal(agentRow(s, 'cto_agent').used.tool_calls, 1);
});

test('LangGraph agent with @langchain/openai: succeeds, spend equals usage x prices', async () => {
  const model = new ChatOpenAI({
    model: 'gpt-4o', apiKey: env('KEY_SDK'), maxTokens: 150,
    configuration: { baseURL: `${GW}/v1`, defaultHeaders: { 'x-emads-task': 'gw-langgraph' } },
  });
  const graph = new StateGraph(MessagesAnnotation)
    .addNode('analyst', async (state) => ({ messages: [await model.invoke(state.messages)] }))
    .addNode('reviewer', async (state) => ({
      messages: [await model.invoke([...state.messages, { role: 'user', content: 'Review that.' }])],
    }))
    .addEdge(START, 'analyst').addEdge('analyst', 'reviewer').addEdge('reviewer', END)
    .compile();
  const out = await graph.invoke({ messages: [{ role: 'user', content: 'Assess the vendor risk.' }] });
  const ai = out.messages.filter((m) => m.usage_metadata);
  assert.equal(ai.length, 2, JSON.stringify(out.messages.map((m) => [m.constructor.name, m.usage_metadata, m.response_metadata])));
  await assertCharged('gw-langgraph', 'cto_agent',
    ai.map((m) => ['gpt-4o', m.usage_metadata.input_tokens, m.usage_metadata.output_tokens]));
});

test('Anthropic SDK: messages, plain and streamed, charged by their usage', async () => {
  const client = new Anthropic({ baseURL: GW, apiKey: env('KEY_SDK'),
    defaultHeaders: { 'x-emads-task': 'gw-anthropic' } });
  const m = await client.messages.create({ model: 'gpt-4o-mini', max_tokens: 300, messages: msgs });
  assert.equal(m.type, 'message');
  const stream = client.messages.stream({ model: 'gpt-4o-mini', max_tokens: 300, messages: msgs });
  const fin = await stream.finalMessage();
  assert.ok(fin.content[0].text.length > 0);
  await assertCharged('gw-anthropic', 'cto_agent', [m, fin].map((x) =>
    ['gpt-4o-mini', x.usage.input_tokens, x.usage.output_tokens]));
});

test('budget runs out: the SDK raises 429 budget_exceeded, not retried, nothing overspent', async () => {
  // KEY_SMALL has its own budget of 0.0005 USD a day (its ambient task)
  const client = openai(env('KEY_SMALL'), {}, { maxRetries: 3 });
  let ok = 0, err = null;
  const before = llmLines(2);
  for (let i = 0; i < 50 && !err; i++) {
    try {
      await client.chat.completions.create({ model: 'gpt-4o-mini', messages: sys2 });
      ok++;
    } catch (e) { err = e; }
  }
  assert.ok(err, 'the budget never ran out');
  assert.ok(ok >= 1, 'no call was granted at all');
  assert.ok(err instanceof OpenAI.RateLimitError, `got ${err}`);
  assert.equal(err.status, 429);
  assert.equal(err.code, 'budget_exceeded');
  assert.equal(err.headers.get('x-should-retry'), 'false');
  // the key's own budget per day ($0.0005) is what runs out: its period account
  assert.equal(err.error.account, 'key');
  assert.ok(['tokens', 'cost_uusd'].includes(err.error.dimension));
  assert.ok(err.error.requested > err.error.available);
  // the denied call reached no provider, and the SDK did not retry it
  assert.equal(llmLines(2) - before, ok);
  const task = err.error.task;
  assert.match(task, /^gw-small-\d{8}$/);
  const s = await settled(task);
  // the day's task is a container; the key's $0.0005 a day bounds what it spent
  assert.ok(s.total.used.cost_uusd > 0 && s.total.used.cost_uusd <= 500,
    `spent ${s.total.used.cost_uusd} uUSD under a key budget of 500`);
  assertNoOverspend(s, 'small key');
});

test('streaming: the first chunk arrives before the provider finishes; usage committed', async () => {
  await control({ chunk_delay_ms: 300 });
  const client = openai(env('KEY_SDK'), { 'x-emads-task': 'gw-stream' });
  const before = llmLines();
  const stream = await client.chat.completions.create({
    model: 'gpt-4o-mini', messages: msgs, max_tokens: 200, stream: true });
  let chunks = 0, usage = null, text = '';
  for await (const chunk of stream) {
    if (chunks++ === 0) // the server logs a request when its answer is complete
      assert.equal(llmLines(), before, 'the first chunk came only after the provider finished');
    if (chunk.usage) usage = chunk.usage;
    text += chunk.choices[0]?.delta?.content ?? '';
  }
  await control({ chunk_delay_ms: 0 });
  assert.ok(chunks >= 8 && text.length > 0);
  assert.ok(usage, 'no usage chunk (the gateway asks for it)');
  await assertCharged('gw-stream', 'cto_agent',
    [['gpt-4o-mini', usage.prompt_tokens, usage.completion_tokens]]);
});

test('streaming: a client that disconnects mid-stream is charged what was streamed', async () => {
  // prose, so the gateway's estimate of the streamed text and the server's
  // count of the whole answer measure alike
  const prose = 'The migration is feasible if the team moves the billing jobs first and '
    .repeat(8);
  await control({ chunk_delay_ms: 400, content: prose });
  const client = openai(env('KEY_SDK'), { 'x-emads-task': 'gw-cut' });
  const full = await openai(env('KEY_SDK'), { 'x-emads-task': 'gw-cut-full' }).chat.completions
    .create({ model: 'gpt-4o-mini', messages: msgs, max_tokens: 200 });
  const stream = await client.chat.completions.create({
    model: 'gpt-4o-mini', messages: msgs, max_tokens: 200, stream: true });
  let chunks = 0;
  for await (const chunk of stream) {
    void chunk;
    if (++chunks === 2) break; // leaves the loop: the SDK aborts the request
  }
  const s = await settled('gw-cut');
  await control({ chunk_delay_ms: 0 });
  const used = agentRow(s, 'cto_agent').used;
  const whole = full.usage.prompt_tokens + full.usage.completion_tokens;
  assert.ok(used.tokens > 0, 'the cut stream was not charged');
  assert.ok(used.tokens < whole, `charged ${used.tokens} tokens, a whole answer is ${whole}`);
  // the prompt (estimated with its margin) and at most half the answer
  assert.ok(used.tokens < full.usage.prompt_tokens * 1.1 + 8 + full.usage.completion_tokens / 2,
    `charged ${used.tokens}: more than the streamed part`);
});

test('race: 64 concurrent streams against a budget for 10 calls: overspend 0, every grant committed', async () => {
  await control({ chunk_delay_ms: 20 });
  const client = openai(env('KEY_RACE'), {}, { maxRetries: 0 });
  const one = async () => {
    try {
      const stream = await client.chat.completions.create({
        model: 'gpt-4o-mini', messages: msgs, max_tokens: 100, stream: true });
      let usage = null;
      for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
      return { ok: true, usage };
    } catch (e) {
      assert.equal(e.status, 429, `unexpected error ${e}`);
      assert.equal(e.code, 'budget_exceeded');
      return { ok: false, task: e.error.task };
    }
  };
  const res = await Promise.all(Array.from({ length: 64 }, one));
  await control({ chunk_delay_ms: 0 });
  const granted = res.filter((r) => r.ok), denied = res.filter((r) => !r.ok);
  console.log(`# race: ${granted.length} granted, ${denied.length} denied`);
  assert.ok(granted.length >= 10, `only ${granted.length} granted`);
  assert.ok(denied.length >= 1, 'nothing was denied');
  assert.ok(granted.every((r) => r.usage), 'a granted stream ended without usage');
  // every granted call committed with its usage, nothing else charged
  const s = await assertCharged(denied[0].task, 'coo_agent',
    granted.map((r) => ['gpt-4o-mini', r.usage.prompt_tokens, r.usage.completion_tokens]));
  assertNoOverspend(s, 'race');
});

test('idempotency: the SDK retry of a timed-out request is not forwarded or charged twice', async () => {
  await control({ scenario: 'slow:1500' });
  const client = openai(env('KEY_SDK'), { 'x-emads-task': 'gw-retry' }, { timeout: 1000, maxRetries: 3 });
  const before = llmLines(4);
  const data = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: turn4, max_tokens: 200 });
  await control({ scenario: 'usage' });
  assert.ok(data.usage.completion_tokens > 0);
  await sleep(300);
  assert.equal(llmLines(4) - before, 1, 'the provider got the call more than once');
  const s = await settled('gw-retry');
  assert.equal(agentRow(s, 'cto_agent').used.tokens, data.usage.prompt_tokens + data.usage.completion_tokens);
});

test('revoked key: 401 at once', async () => {
  const client = openai(env('KEY_REVOKE'), {}, { maxRetries: 0 });
  await client.chat.completions.create({ model: 'gpt-4o-mini', messages: msgs, max_tokens: 50 });
  ctl('keys', 'revoke', 'revoke-me');
  await assert.rejects(
    client.chat.completions.create({ model: 'gpt-4o-mini', messages: msgs, max_tokens: 50 }),
    (e) => e instanceof OpenAI.AuthenticationError && e.status === 401);
  await assert.rejects(client.models.list(), (e) => e.status === 401);
});

let failed = 0;
for (const [name, fn] of cases) {
  try {
    await fn();
    console.log(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.log(`not ok - ${name}\n${e.stack ?? e}`);
  }
}
process.exit(failed ? 1 : 0);
