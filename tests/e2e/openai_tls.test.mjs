// End-to-end test: the official `openai` npm client over HTTPS to vllm-router terminating TLS.
// run.sh makes the certificates with the openssl tool (E2E_TLS_DIR: ca.pem, server.pem,
// server.key) and points NODE_EXTRA_CA_CERTS at the CA before node starts (Node reads it at
// start only), so the client verifies the router's certificate as it would a real one.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import OpenAI from 'openai';
import { children, startProcess, stopProcess, VLLM_ROUTER, VLLM_SIM } from './processes.mjs';

const TLS_DIR = process.env.E2E_TLS_DIR;
const MODEL = 'e2e/tls-model';

describe('vllm-router over HTTPS with the openai npm client', { timeout: 20_000 }, () => {
  /** @type {OpenAI} */
  let client;
  let routerUrl;

  before(async () => {
    assert.ok(TLS_DIR, 'E2E_TLS_DIR is not set: run this test through tests/e2e/run.sh');
    assert.equal(process.env.NODE_EXTRA_CA_CERTS, join(TLS_DIR, 'ca.pem'));
    const simUrl = await startProcess('vllm-sim', VLLM_SIM,
      ['--host', '127.0.0.1', '--port', '0', '--model', MODEL, '--id', 'sim-tls']);
    routerUrl = await startProcess('vllm-router', VLLM_ROUTER, [
      '--host', '127.0.0.1', '--port', '0', '--model', `${MODEL}=${simUrl}`,
      '--tls-cert', join(TLS_DIR, 'server.pem'), '--tls-key', join(TLS_DIR, 'server.key'),
      '--log-level', 'warn',
    ]);
    client = new OpenAI({ baseURL: `${routerUrl}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 10_000 });
  });

  after(async () => {
    await Promise.all(children.map(stopProcess));
  });

  it('the router announces https:// and lists its model', async () => {
    assert.match(routerUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
    const ids = [];
    for await (const model of client.models.list()) ids.push(model.id);
    assert.deepEqual(ids, [MODEL]);
  });

  it('chat.completions.create over https', async () => {
    const { data: chat, response } = await client.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: 'hi' }], max_tokens: 4,
    }).withResponse();
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-sim-id'), 'sim-tls');
    assert.equal(chat.usage.completion_tokens, 4);
    assert.ok(chat.choices[0].message.content.length > 0);
  });

  it('streaming chat over https: every delta, then usage', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: 'stream' }], max_tokens: 8, stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const withChoices = chunks.filter((c) => c.choices.length > 0);
    assert.equal(withChoices[0].choices[0].delta.role, 'assistant');
    assert.equal(withChoices.map((c) => c.choices[0].delta.content ?? '').join(''),
      'tok0 tok1 tok2 tok3 tok4 tok5 tok6 tok7 ');
    assert.equal(chunks.at(-1).usage.completion_tokens, 8);
  });
});
