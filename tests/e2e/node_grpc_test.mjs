// anyai-server end to end from Node: @grpc/grpc-js with the .proto files loaded at run time by
// @grpc/proto-loader (no generated code), against a real server process on 127.0.0.1 port 0
// with a fresh temp data dir, stopped with SIGTERM (SIGKILL after a timeout) at the end.
//
// ctest runs it (tests/e2e/CMakeLists.txt, e2e_node_grpc):
//   ANYAI_SERVER_BINARY=build/bin/anyai-server node --test tests/e2e/node_grpc_test.mjs
// The npm packages come from tests/e2e/node_modules: `scripts/install-deps.sh --tests`.
import assert from 'node:assert/strict';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { missingPackages, startServer } from './anyai_server_process.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const PROTO_DIR = resolve(HERE, '..', '..', 'proto');
const SERVER_BINARY = process.env.ANYAI_SERVER_BINARY;
const ADMIN_TOKEN = 'e2e-node-admin-token';
const CALL_TIMEOUT_MS = 30_000;
const OPEN_MODEL = 'llama-3-8b-chat'; // feature class "llm": free 10/min

const missing = missingPackages(join(HERE, 'node_modules'),
  ['@grpc/grpc-js', '@grpc/proto-loader']);

if (missing.length > 0 || !SERVER_BINARY) {
  // Fail loudly rather than skip: a missing dependency must not look like a pass.
  test('prerequisites', () => {
    assert.fail(missing.length > 0
      ? `${missing.join(' and ')} not installed in ${join(HERE, 'node_modules')}: ` +
        'run scripts/install-deps.sh --tests'
      : 'ANYAI_SERVER_BINARY is not set (ctest sets it to the anyai-server binary)');
  });
} else {
  const grpc = await import('@grpc/grpc-js');
  const protoLoader = await import('@grpc/proto-loader');
  await runTests(grpc, protoLoader);
}

async function runTests(grpc, protoLoader) {
  const definition = protoLoader.loadSync(['anyai/v1/anyai.proto', 'anyai/v1/admin.proto'], {
    includeDirs: [PROTO_DIR, '/usr/include'], keepCase: true, longs: String, enums: String,
    oneofs: true,
  });
  const v1 = grpc.loadPackageDefinition(definition).anyai.v1;

  describe('anyai-server over gRPC from Node', { timeout: 180_000 }, () => {
    let server;
    let anyai;
    let admin;

    before(async () => {
      server = await startServer(SERVER_BINARY, { adminToken: ADMIN_TOKEN });
      anyai = new v1.AnyAI(server.grpcAddress, grpc.credentials.createInsecure());
      admin = new v1.Admin(server.adminAddress, grpc.credentials.createInsecure());
    });

    after(async () => {
      anyai?.close();
      admin?.close();
      await server?.stop();
    });

    const deadline = () => new Date(Date.now() + CALL_TIMEOUT_MS);
    const bearer = (token) => {
      const metadata = new grpc.Metadata();
      if (token) metadata.set('authorization', `Bearer ${token}`);
      return metadata;
    };
    // A unary call: resolves { response, metadata (initial) }, rejects with the grpc error.
    const unary = (client, method, request, token) => new Promise((resolveCall, reject) => {
      let initial;
      const call = client[method](request, bearer(token), { deadline: deadline() },
        (error, response) => (error ? reject(error) : resolveCall({ response, metadata: initial })));
      call.on('metadata', (metadata) => { initial = metadata; });
    });
    const chatRequest = (text = 'hello from node') => ({
      model: OPEN_MODEL, messages: [{ role: 'user', content: text }],
    });
    const newKey = async (plan) => {
      const { response } = await unary(admin, 'CreateKey', { plan, label: 'node e2e' },
        ADMIN_TOKEN);
      assert.match(response.key, /^sk-/);
      return response.key;
    };

    test('CreateChatCompletion answers with usage and x-ratelimit metadata', async () => {
      const key = await newKey('free');
      const { response, metadata } = await unary(anyai, 'CreateChatCompletion', chatRequest(),
        key);
      assert.match(response.id, /^chatcmpl-/);
      assert.equal(response.object, 'chat.completion');
      assert.equal(response.model, OPEN_MODEL);
      assert.equal(response.choices.length, 1);
      assert.equal(response.choices[0].message.role, 'assistant');
      assert.ok(response.choices[0].message.content.length > 0);
      const { prompt_tokens, completion_tokens, total_tokens } = response.usage;
      assert.ok(prompt_tokens > 0 && completion_tokens > 0);
      assert.equal(total_tokens, prompt_tokens + completion_tokens);
      assert.deepEqual(metadata.get('x-ratelimit-limit-requests'), ['10']);
      assert.deepEqual(metadata.get('x-ratelimit-remaining-requests'), ['9']);
      assert.equal(metadata.get('x-ratelimit-reset-requests').length, 1);
    });

    test('StreamChatCompletion streams role, then content, then finish_reason', async () => {
      const key = await newKey('free');
      const call = anyai.StreamChatCompletion(chatRequest('tell me a long story'), bearer(key),
        { deadline: deadline() });
      const chunks = [];
      for await (const chunk of call) chunks.push(chunk);
      assert.ok(chunks.length > 2, `only ${chunks.length} chunks`);
      for (const chunk of chunks) {
        assert.equal(chunk.object, 'chat.completion.chunk');
        assert.equal(chunk.id, chunks[0].id);
      }
      assert.equal(chunks[0].choices[0].delta.role, 'assistant');
      for (const chunk of chunks.slice(0, -1)) {
        assert.equal(chunk.choices[0].finish_reason, undefined, JSON.stringify(chunk));
      }
      assert.ok(['stop', 'length'].includes(chunks.at(-1).choices[0].finish_reason));
      const text = chunks.map((c) => c.choices[0].delta.content ?? '').join('');
      assert.ok(text.trim().length > 0);
    });

    test('CheckKey shows the plan, the masked key and what was used', async () => {
      const key = await newKey('free');
      await unary(anyai, 'CreateChatCompletion', chatRequest(), key);
      const { response } = await unary(anyai, 'CheckKey', { key });
      assert.equal(response.plan, 'free');
      assert.ok(response.masked_key.includes('\u2026'), response.masked_key);
      assert.notEqual(response.masked_key, key);
      const llm = response.classes.find((c) => c.feature_class === 'llm');
      assert.ok(llm, 'no llm class');
      assert.deepEqual(llm.windows.map((w) => [w.window.seconds, w.used, w.limit, w.remaining]),
        [['60', '1', '10', '9'], ['86400', '1', '2000', '1999']]);
    });

    test('the eleventh free chat in a minute is RESOURCE_EXHAUSTED', async () => {
      const key = await newKey('free');
      for (let i = 0; i < 10; i++) {
        await unary(anyai, 'CreateChatCompletion', chatRequest(), key);
      }
      await assert.rejects(unary(anyai, 'CreateChatCompletion', chatRequest(), key), (error) => {
        assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED, error.message);
        assert.equal(error.code, 8);
        assert.match(error.details, /llm/);
        assert.equal(error.metadata.get('grpc-status-details-bin').length, 1);
        assert.deepEqual(error.metadata.get('x-ratelimit-remaining-requests'), ['0']);
        return true;
      });
    });
  });
}
