// End-to-end test: the official `openai` npm client against vllm-router in front of two
// vllm-sim engines. Binaries come from $VLLM_ROUTER / $VLLM_SIM (default: ../../build/...).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { get as httpGet } from 'node:http';
import OpenAI, { toFile } from 'openai';
import { children, startProcess, stopProcess, VLLM_ROUTER, VLLM_SIM } from './processes.mjs';

const MODEL_A = 'e2e/model-a'; // served by sim A, which also serves the LoRA
const MODEL_B = 'e2e/model-b'; // served by sim B
const ALIAS_B = 'model-b-alias';
const LORA = 'sql-lora';
const API_KEY = 'sk-test';

/**
 * GET url -> parsed JSON, on a fresh connection that is closed afterwards (agent: false), so no
 * idle keep-alive connection delays the engine's shutdown (see stopProcess).
 */
function getJson(url) {
  return new Promise((resolvePromise, reject) => {
    httpGet(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        try { resolvePromise(JSON.parse(body)); } catch (e) { reject(new Error(`${url}: ${e.message}: ${body}`)); }
      });
    }).on('error', reject);
  });
}

/** Collects a stream of chunks into an array. */
async function collect(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

function assertUsage(usage, maxTokens) {
  assert.ok(usage, 'usage present');
  assert.ok(Number.isInteger(usage.prompt_tokens) && usage.prompt_tokens > 0, `prompt_tokens: ${usage.prompt_tokens}`);
  assert.equal(usage.completion_tokens, maxTokens);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
}

describe('vllm-router with the openai npm client', { timeout: 20_000 }, () => {
  /** @type {OpenAI} */
  let client;
  let routerUrl;
  const simIds = {};
  const simUrls = {};

  before(async () => {
    const [urlA, urlB] = await Promise.all([
      startProcess('vllm-sim', VLLM_SIM,
        ['--host', '127.0.0.1', '--port', '0', '--model', MODEL_A, '--lora', LORA, '--id', 'sim-a']),
      startProcess('vllm-sim', VLLM_SIM,
        ['--host', '127.0.0.1', '--port', '0', '--model', MODEL_B, '--id', 'sim-b']),
    ]);
    simIds[MODEL_A] = 'sim-a';
    simIds[MODEL_B] = 'sim-b';
    simUrls[MODEL_A] = urlA;
    simUrls[MODEL_B] = urlB;
    routerUrl = await startProcess('vllm-router', VLLM_ROUTER, [
      '--host', '127.0.0.1', '--port', '0',
      '--model', `${MODEL_A}=${urlA}`,
      '--model', `${MODEL_B}=${urlB}`,
      '--alias', `${ALIAS_B}=${MODEL_B}`,
      '--lora', `${LORA}=${MODEL_A}`,
      '--api-key', API_KEY,
      '--log-level', 'warn',
    ]);
    client = new OpenAI({ baseURL: `${routerUrl}/v1`, apiKey: API_KEY, maxRetries: 0, timeout: 10_000 });
  });

  after(async () => {
    await Promise.all(children.map(stopProcess));
  });

  it('models.list() lists both models, the alias and the LoRA', async () => {
    const ids = [];
    const byId = {};
    for await (const model of client.models.list()) {
      assert.equal(model.object, 'model');
      ids.push(model.id);
      byId[model.id] = model;
    }
    for (const id of [MODEL_A, MODEL_B, ALIAS_B, LORA]) {
      assert.ok(ids.includes(id), `${id} missing from ${JSON.stringify(ids)}`);
    }
    assert.equal(byId[LORA].parent, MODEL_A, 'the LoRA names its base model as parent');
  });

  it('chat.completions.create answers with content and usage', async () => {
    const { data: chat, response } = await client.chat.completions.create({
      model: MODEL_A,
      messages: [{ role: 'user', content: 'Say something.' }],
      max_tokens: 5,
    }).withResponse();
    assert.equal(response.status, 200);
    assert.ok(response.headers.get('x-request-id'), 'x-request-id header');
    assert.equal(chat._request_id, response.headers.get('x-request-id'));
    assert.equal(chat.object, 'chat.completion');
    assert.equal(chat.model, MODEL_A);
    assert.equal(chat.choices.length, 1);
    assert.equal(chat.choices[0].message.role, 'assistant');
    assert.equal(typeof chat.choices[0].message.content, 'string');
    assert.ok(chat.choices[0].message.content.length > 0, 'content non-empty');
    assert.equal(chat.choices[0].finish_reason, 'length');
    assertUsage(chat.usage, 5);
  });

  for (const [name, target] of [[ALIAS_B, MODEL_B], [LORA, MODEL_A], [MODEL_B, MODEL_B]]) {
    it(`chat via ${name} is routed to the engine of ${target}`, async () => {
      const { data: chat, response } = await client.chat.completions.create({
        model: name,
        messages: [{ role: 'user', content: 'hi' }],
        max_tokens: 2,
      }).withResponse();
      assert.ok(chat.choices[0].message.content.length > 0, 'content non-empty');
      assertUsage(chat.usage, 2);
      // The engine that answered: x-sim-id is the simulator's header, passed through.
      assert.equal(response.headers.get('x-sim-id'), simIds[target]);
    });
  }

  it('completions.create answers with text and usage', async () => {
    const completion = await client.completions.create({
      model: MODEL_B,
      prompt: 'Once upon a time',
      max_tokens: 4,
    });
    assert.equal(completion.object, 'text_completion');
    assert.equal(completion.model, MODEL_B);
    assert.equal(typeof completion.choices[0].text, 'string');
    assert.ok(completion.choices[0].text.length > 0, 'text non-empty');
    assert.equal(completion.choices[0].finish_reason, 'length');
    assertUsage(completion.usage, 4);
  });

  it('audio.transcriptions.create (multipart form) is routed by its model field, alias included', async () => {
    const audio = Buffer.from('RIFF\u0000\u0001fake wav bytes --boundary-lookalike\r\n', 'binary');
    const transcription = await client.audio.transcriptions.create({
      file: await toFile(audio, 'a.wav', { type: 'audio/wav' }),
      model: ALIAS_B,
    });
    assert.equal(typeof transcription.text, 'string');
    assert.ok(transcription.text.length > 0, 'text non-empty');
    await assert.rejects(
      client.audio.transcriptions.create({ file: await toFile(audio, 'a.wav'), model: 'no-such-model' }),
      (err) => err instanceof OpenAI.NotFoundError && err.status === 404,
    );
  });

  it('embeddings.create returns a vector of finite numbers', async () => {
    const result = await client.embeddings.create({
      model: MODEL_A, input: 'hello world', encoding_format: 'float',
    });
    assert.equal(result.object, 'list');
    assert.equal(result.model, MODEL_A);
    assert.equal(result.data.length, 1);
    const vec = result.data[0].embedding;
    assert.ok(Array.isArray(vec) && vec.length > 0, `embedding: ${JSON.stringify(vec)}`);
    for (const x of vec) assert.ok(typeof x === 'number' && Number.isFinite(x), `not a number: ${x}`);
    assert.ok(Math.abs(Math.hypot(...vec) - 1) < 1e-3, 'vllm-sim returns unit vectors');
    assert.ok(result.usage.prompt_tokens > 0);
  });

  it('embeddings.create with a batch of inputs', async () => {
    const result = await client.embeddings.create({
      model: MODEL_B, input: ['a', 'b c'], encoding_format: 'float',
    });
    assert.equal(result.data.length, 2);
    for (const [i, item] of result.data.entries()) {
      assert.equal(item.index, i);
      assert.ok(item.embedding.length > 0);
      for (const x of item.embedding) assert.ok(typeof x === 'number' && Number.isFinite(x));
    }
    assert.notDeepEqual(result.data[0].embedding, result.data[1].embedding);
  });

  // Without encoding_format the client asks for "base64" and decodes the answer as base64
  // float32, as vLLM sends it.
  it('embeddings.create with the client default encoding (base64) matches float', async () => {
    const input = 'hello world';
    const floats = await client.embeddings.create({ model: MODEL_A, input, encoding_format: 'float' });
    const decoded = await client.embeddings.create({ model: MODEL_A, input });
    const want = floats.data[0].embedding;
    const got = decoded.data[0].embedding;
    assert.equal(got.length, want.length, `default-encoding vector: ${JSON.stringify(got)}`);
    for (const [i, x] of got.entries()) assert.ok(Math.abs(x - want[i]) < 1e-5, `[${i}] ${x} != ${want[i]}`);
  });

  it('streaming chat: role first, content deltas, final usage chunk', async () => {
    const stream = await client.chat.completions.create({
      model: LORA,
      messages: [{ role: 'user', content: 'Stream please.' }],
      max_tokens: 6,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = await collect(stream);
    assert.ok(chunks.length >= 3, `only ${chunks.length} chunks`);
    for (const c of chunks) {
      assert.equal(c.object, 'chat.completion.chunk');
      assert.equal(c.id, chunks[0].id, 'one id for the whole stream');
    }
    const withChoices = chunks.filter((c) => c.choices.length > 0);
    assert.equal(withChoices[0].choices[0].delta.role, 'assistant', 'first delta carries the role');
    const content = withChoices.map((c) => c.choices[0].delta.content ?? '').join('');
    assert.ok(content.length > 0, 'concatenated content non-empty');
    const finish = withChoices.map((c) => c.choices[0].finish_reason).filter(Boolean);
    assert.deepEqual(finish, ['length']);
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, [], 'usage chunk has no choices');
    assertUsage(last.usage, 6);
    // Only the final chunk carries usage.
    for (const c of chunks.slice(0, -1)) assert.ok(c.usage == null, 'usage only on the last chunk');
  });

  it('streaming completions: text deltas and usage', async () => {
    const stream = await client.completions.create({
      model: MODEL_B,
      prompt: 'Count:',
      max_tokens: 5,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = await collect(stream);
    const withChoices = chunks.filter((c) => c.choices.length > 0);
    const text = withChoices.map((c) => c.choices[0].text).join('');
    assert.ok(text.length > 0, 'concatenated text non-empty');
    assert.equal(withChoices.at(-1).choices[0].finish_reason, 'length');
    assertUsage(chunks.at(-1).usage, 5);
  });

  it('streaming chat can be aborted by the client', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL_A,
      messages: [{ role: 'user', content: 'long' }],
      max_tokens: 1000,
      stream: true,
    }, { headers: { 'x-sim-itl-ms': '20' } });
    let n = 0;
    for await (const chunk of stream) {
      assert.equal(chunk.object, 'chat.completion.chunk');
      if (++n === 3) break; // breaking out of the iterator aborts the request
    }
    assert.equal(n, 3);
    // The router passes the disconnect on: the engine sees the request cancelled.
    const deadline = Date.now() + 5_000;
    let stats;
    for (;;) {
      stats = await getJson(`${simUrls[MODEL_A]}/sim/stats`);
      if ((stats.in_flight === 0 && stats.cancelled >= 1) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(stats.in_flight, 0, `engine still busy: ${JSON.stringify(stats)}`);
    assert.ok(stats.cancelled >= 1, `engine saw no cancellation: ${JSON.stringify(stats)}`);
    // The router keeps working afterwards.
    const chat = await client.chat.completions.create({
      model: MODEL_A, messages: [{ role: 'user', content: 'again' }], max_tokens: 1,
    });
    assertUsage(chat.usage, 1);
  });

  it('unknown model -> OpenAI.NotFoundError (404) naming the model', async () => {
    await assert.rejects(
      client.chat.completions.create({
        model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }],
      }),
      (err) => {
        assert.ok(err instanceof OpenAI.NotFoundError, `got ${err?.constructor?.name}: ${err}`);
        assert.equal(err.status, 404);
        assert.match(err.message, /no-such-model/);
        return true;
      },
    );
  });

  it('missing model -> OpenAI.BadRequestError (400)', async () => {
    await assert.rejects(
      client.post('/chat/completions', { body: { messages: [{ role: 'user', content: 'hi' }] } }),
      (err) => {
        assert.ok(err instanceof OpenAI.BadRequestError, `got ${err?.constructor?.name}: ${err}`);
        assert.equal(err.status, 400);
        assert.match(err.message, /model/);
        return true;
      },
    );
  });

  it('wrong API key -> OpenAI.AuthenticationError (401)', async () => {
    const wrong = new OpenAI({ baseURL: `${routerUrl}/v1`, apiKey: 'wrong', maxRetries: 0, timeout: 10_000 });
    for (const call of [
      () => wrong.models.list(),
      () => wrong.chat.completions.create({ model: MODEL_A, messages: [{ role: 'user', content: 'hi' }] }),
    ]) {
      await assert.rejects(call(), (err) => {
        assert.ok(err instanceof OpenAI.AuthenticationError, `got ${err?.constructor?.name}: ${err}`);
        assert.equal(err.status, 401);
        return true;
      });
    }
  });
});
