// anyai-server end to end from the OFFICIAL OpenAI Node SDK (npm `openai`, pinned in
// package.json), unchanged but for its baseURL: models, chat (plain and streaming), images, the
// x-ratelimit-* headers, and the SDK's typed errors (RateLimitError, AuthenticationError,
// BadRequestError, NotFoundError) from our error bodies. The server is a real process on
// 127.0.0.1 port 0 with a fresh temp data dir (anyai_server_process.mjs); the API keys the SDK
// needs are created through the Admin gRPC service (@grpc/grpc-js).
//
// ctest runs it (tests/e2e/CMakeLists.txt, e2e_openai_sdk):
//   ANYAI_SERVER_BINARY=build/bin/anyai-server node --test tests/e2e/openai_sdk_test.mjs
// The npm packages come from tests/e2e/node_modules: `scripts/install-deps.sh --tests`.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { missingPackages, startServer } from './anyai_server_process.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const PROTO_DIR = resolve(HERE, '..', '..', 'proto');
const SERVER_BINARY = process.env.ANYAI_SERVER_BINARY;
const ADMIN_TOKEN = 'e2e-openai-sdk-admin-token';
const CALL_TIMEOUT_MS = 30_000;
const OPEN_MODEL = 'llama-3-8b-chat'; // feature class "llm": free 10/min, 2000/day
const CLOSED_MODEL = 'gpt-4o'; // feature class "closed_llm": free 25/hour, 100/day
const SEED_MODEL_COUNT = 103;
const PACKAGES = ['openai', '@grpc/grpc-js', '@grpc/proto-loader'];

const missing = missingPackages(join(HERE, 'node_modules'), PACKAGES);

if (missing.length > 0 || !SERVER_BINARY) {
  // Fail loudly rather than skip: a missing dependency must not look like a pass.
  test('prerequisites', () => {
    assert.fail(missing.length > 0
      ? `${missing.join(', ')} not installed in ${join(HERE, 'node_modules')}: ` +
        'run scripts/install-deps.sh --tests (npm ci in tests/e2e)'
      : 'ANYAI_SERVER_BINARY is not set (ctest sets it to the anyai-server binary)');
  });
} else {
  const { default: OpenAI } = await import('openai');
  const grpc = await import('@grpc/grpc-js');
  const protoLoader = await import('@grpc/proto-loader');
  await runTests(OpenAI, grpc, protoLoader);
}

// Asserts that `promise` rejects with an instance of `ErrorClass` and returns that error.
async function rejectsWith(promise, ErrorClass) {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ErrorClass,
      `expected ${ErrorClass.name}, got ${error?.constructor?.name}: ${error?.message}`);
    return error;
  }
  assert.fail(`expected ${ErrorClass.name}, but the call succeeded`);
}

// The width and height of a PNG from its IHDR chunk, after checking the signature.
function pngSize(bytes) {
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.ok(bytes.length > 33 && bytes.subarray(0, 8).equals(signature),
    `not a PNG: starts with ${bytes.subarray(0, 8).toString('hex')}`);
  assert.equal(bytes.subarray(12, 16).toString('latin1'), 'IHDR');
  return [bytes.readUInt32BE(16), bytes.readUInt32BE(20)];
}

async function runTests(OpenAI, grpc, protoLoader) {
  const sdkVersion =
    JSON.parse(readFileSync(join(HERE, 'node_modules', 'openai', 'package.json'), 'utf8')).version;
  const definition = protoLoader.loadSync(['anyai/v1/admin.proto'], {
    includeDirs: [PROTO_DIR, '/usr/include'], keepCase: true, longs: String, enums: String,
    oneofs: true,
  });
  const v1 = grpc.loadPackageDefinition(definition).anyai.v1;

  describe(`anyai-server from the official OpenAI SDK (openai ${sdkVersion})`,
    { timeout: 180_000 }, () => {
      let server;
      let admin;
      let baseURL;

      before(async () => {
        server = await startServer(SERVER_BINARY, {
          adminToken: ADMIN_TOKEN, prefix: 'anyai-e2e-openai-' });
        admin = new v1.Admin(server.adminAddress, grpc.credentials.createInsecure());
        baseURL = `http://127.0.0.1:${server.httpPort}/v1`;
      });

      after(async () => {
        admin?.close();
        await server?.stop();
      });

      // A fresh API key (the SDK refuses to run without one), so that every test starts from
      // empty quota windows.
      const newKey = (plan = 'free') => new Promise((resolveKey, reject) => {
        const metadata = new grpc.Metadata();
        metadata.set('authorization', `Bearer ${ADMIN_TOKEN}`);
        admin.CreateKey({ plan, label: 'openai sdk e2e' }, metadata,
          { deadline: new Date(Date.now() + CALL_TIMEOUT_MS) }, (error, response) => {
            if (error) return reject(error);
            assert.match(response.key, /^sk-/);
            return resolveKey(response.key);
          });
      });
      const client = (apiKey) => new OpenAI({
        baseURL, apiKey, maxRetries: 0, timeout: CALL_TIMEOUT_MS,
      });
      const messages = (text = 'hello from the OpenAI SDK') => [{ role: 'user', content: text }];

      test('models.list() returns the seed catalogue', async () => {
        const openai = client(await newKey());
        const page = await openai.models.list();
        assert.equal(page.data.length, SEED_MODEL_COUNT);
        assert.equal(page.hasNextPage(), false);
        const ids = page.data.map((m) => m.id);
        assert.ok(ids.includes('gpt-4o'), 'no gpt-4o');
        assert.ok(ids.includes(OPEN_MODEL), `no ${OPEN_MODEL}`);
        assert.equal(new Set(ids).size, ids.length, 'duplicate model ids');
        for (const m of page.data) {
          assert.equal(m.object, 'model', JSON.stringify(m));
          assert.equal(typeof m.created, 'number');
          assert.equal(typeof m.owned_by, 'string');
        }
        // The SDK's auto-pagination walks the same single page.
        const walked = [];
        for await (const m of openai.models.list()) walked.push(m.id);
        assert.deepEqual(walked, ids);
      });

      test('models.retrieve() finds gpt-4o', async () => {
        const openai = client(await newKey());
        const model = await openai.models.retrieve('gpt-4o');
        assert.equal(model.id, 'gpt-4o');
        assert.equal(model.object, 'model');
        assert.equal(model.owned_by, 'openai');
        assert.equal(typeof model.created, 'number');
      });

      test('chat.completions.create() answers with content and usage that adds up', async () => {
        const openai = client(await newKey());
        for (const model of [OPEN_MODEL, CLOSED_MODEL]) {
          const completion = await openai.chat.completions.create({
            model, messages: messages() });
          assert.match(completion.id, /^chatcmpl-/);
          assert.equal(completion.object, 'chat.completion');
          assert.equal(completion.model, model);
          assert.equal(completion.choices.length, 1);
          const [choice] = completion.choices;
          assert.equal(choice.index, 0);
          assert.equal(choice.message.role, 'assistant');
          assert.equal(typeof choice.message.content, 'string');
          assert.ok(choice.message.content.trim().length > 0, 'empty content');
          assert.equal(choice.finish_reason, 'stop');
          const { prompt_tokens, completion_tokens, total_tokens } = completion.usage;
          assert.ok(prompt_tokens > 0 && completion_tokens > 0, JSON.stringify(completion.usage));
          assert.equal(total_tokens, prompt_tokens + completion_tokens);
        }
      });

      test('withResponse() shows the x-ratelimit-* headers of a successful chat', async () => {
        const openai = client(await newKey());
        const { data, response } = await openai.chat.completions.create({
          model: OPEN_MODEL, messages: messages() }).withResponse();
        assert.equal(response.status, 200);
        assert.ok(data.choices[0].message.content.length > 0);
        assert.equal(response.headers.get('x-ratelimit-limit-requests'), '10');
        assert.equal(response.headers.get('x-ratelimit-remaining-requests'), '9');
        assert.ok(response.headers.get('x-ratelimit-reset-requests'),
          'no x-ratelimit-reset-requests');
        // closed_llm's tightest window on the free plan is 25 per hour.
        const closed = await openai.chat.completions.create({
          model: CLOSED_MODEL, messages: messages() }).withResponse();
        assert.equal(closed.response.headers.get('x-ratelimit-limit-requests'), '25');
        assert.equal(closed.response.headers.get('x-ratelimit-remaining-requests'), '24');
      });

      test('chat.completions.create({stream: true}) streams chunks ending in stop', async () => {
        const openai = client(await newKey());
        const stream = await openai.chat.completions.create({
          model: OPEN_MODEL, messages: messages('tell me a long story'), stream: true });
        const chunks = [];
        for await (const chunk of stream) chunks.push(chunk);
        assert.ok(chunks.length > 2, `only ${chunks.length} chunks`);
        for (const chunk of chunks) {
          assert.equal(chunk.object, 'chat.completion.chunk');
          assert.equal(chunk.id, chunks[0].id);
          assert.equal(chunk.model, OPEN_MODEL);
          assert.equal(chunk.choices.length, 1, JSON.stringify(chunk));
        }
        assert.equal(chunks[0].choices[0].delta.role, 'assistant');
        for (const chunk of chunks.slice(0, -1)) {
          assert.equal(chunk.choices[0].finish_reason, null, JSON.stringify(chunk));
        }
        assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
        const text = chunks.map((c) => c.choices[0].delta.content ?? '').join('');
        assert.ok(text.trim().length > 0, 'the streamed content is empty');

        // stream_options.include_usage: one more chunk, no choices, the usage.
        const withUsage = await openai.chat.completions.create({
          model: OPEN_MODEL, messages: messages(), stream: true,
          stream_options: { include_usage: true } });
        const all = [];
        for await (const chunk of withUsage) all.push(chunk);
        const last = all.at(-1);
        assert.deepEqual(last.choices, [], JSON.stringify(last));
        assert.ok(last.usage.completion_tokens > 0, JSON.stringify(last));
        assert.equal(last.usage.total_tokens,
          last.usage.prompt_tokens + last.usage.completion_tokens);
        assert.equal(all.at(-2).choices[0].finish_reason, 'stop');
      });

      test('images.generate() returns a b64_json PNG of the requested size', async () => {
        const openai = client(await newKey());
        const images = await openai.images.generate({
          prompt: 'a lighthouse at dusk', model: 'dall-e-2', size: '256x256',
          response_format: 'b64_json' });
        assert.equal(typeof images.created, 'number');
        assert.equal(images.data.length, 1);
        const { b64_json: b64 } = images.data[0];
        assert.equal(typeof b64, 'string', JSON.stringify(images.data[0]).slice(0, 200));
        assert.deepEqual(pngSize(Buffer.from(b64, 'base64')), [256, 256]);
      });

      test('images.generate() with response_format url answers a URL that downloads the PNG',
           async () => {
        const openai = client(await newKey());
        const images = await openai.images.generate({
          prompt: 'A futuristic cityscape', model: 'dall-e-3', n: 1, quality: 'hd',
          response_format: 'url', size: '1024x1024' });  // the seed's example
        const { url } = images.data[0];
        assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/v1\/images\/files\/[0-9a-f]{32}\.png$/);
        const download = await fetch(url);  // what an SDK user does next: no key needed
        assert.equal(download.status, 200);
        assert.equal(download.headers.get('content-type'), 'image/png');
        assert.deepEqual(pngSize(Buffer.from(await download.arrayBuffer())), [1024, 1024]);
      });

      test('chat.completions.create() with the seed\'s claude-3-opus echoes that name', async () => {
        const openai = client(await newKey());
        const completion = await openai.chat.completions.create({
          model: 'claude-3-opus', messages: messages() });
        assert.equal(completion.model, 'claude-3-opus');
        assert.equal((await openai.models.retrieve('claude-3-opus')).id, 'claude-3-opus');
      });

      test('the 11th free llm chat in a minute is OpenAI.RateLimitError (429)', async () => {
        const openai = client(await newKey('free'));
        for (let i = 0; i < 10; i++) {
          await openai.chat.completions.create({ model: OPEN_MODEL, messages: messages() });
        }
        const error = await rejectsWith(
          openai.chat.completions.create({ model: OPEN_MODEL, messages: messages() }),
          OpenAI.RateLimitError);
        assert.ok(error instanceof OpenAI.APIError);
        assert.equal(error.status, 429);
        assert.equal(error.code, 'rate_limit_exceeded');
        // Since openai 5.x, error.headers is a fetch Headers object (not a plain record).
        const retryAfter = error.headers.get('retry-after');
        assert.match(retryAfter ?? '', /^[0-9]+$/, `retry-after: ${retryAfter}`);
        // At most the window plus one of its 61 sub-buckets (README: "Sliding, strict").
        assert.ok(Number(retryAfter) > 0 && Number(retryAfter) <= 61, `retry-after ${retryAfter}`);
        assert.equal(error.headers.get('x-ratelimit-remaining-requests'), '0');
        assert.equal(error.headers.get('x-ratelimit-limit-requests'), '10');
        assert.match(error.message, /^429 /);
        assert.match(error.message, /\bllm\b/, `no class in: ${error.message}`);
        assert.match(error.message, /\b1m\b/, `no window in: ${error.message}`);
      });

      test('a bogus key is OpenAI.AuthenticationError (401)', async () => {
        const openai = client(`sk-anyai-${'0'.repeat(64)}`); // well-formed, never issued
        const error = await rejectsWith(
          openai.chat.completions.create({ model: OPEN_MODEL, messages: messages() }),
          OpenAI.AuthenticationError);
        assert.equal(error.status, 401);
        assert.equal(error.code, 'invalid_api_key');
        await rejectsWith(client('not-a-key').models.list(), OpenAI.AuthenticationError);
      });

      test('a system message that is not first is OpenAI.BadRequestError (400)', async () => {
        const openai = client(await newKey());
        const error = await rejectsWith(openai.chat.completions.create({
          model: OPEN_MODEL,
          messages: [{ role: 'user', content: 'hi' }, { role: 'system', content: 'be brief' }],
        }), OpenAI.BadRequestError);
        assert.equal(error.status, 400);
        assert.equal(error.type, 'invalid_request_error');
        assert.equal(error.param, 'messages[1].role');
        assert.match(error.message, /system/);
      });

      test('an unknown model is OpenAI.NotFoundError (404)', async () => {
        const openai = client(await newKey());
        const error = await rejectsWith(openai.chat.completions.create({
          model: 'no-such-model', messages: messages() }), OpenAI.NotFoundError);
        assert.equal(error.status, 404);
        assert.equal(error.code, 'model_not_found');
        assert.equal(error.param, 'model');
        assert.match(error.message, /no-such-model/);
        const retrieved = await rejectsWith(openai.models.retrieve('no-such-model'),
          OpenAI.NotFoundError);
        assert.equal(retrieved.status, 404);
      });
    });
}
