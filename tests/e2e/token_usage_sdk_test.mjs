// Token quotas from the OFFICIAL OpenAI Node SDK (npm `openai`, pinned in package.json), unchanged
// but for its baseURL (issue 11, SPEC §2 "Tokens, spend, concurrency"): a stream with
// `stream_options: {include_usage: true}` is settled at exactly the usage the SDK received in
// its last chunk; a stream without it at the prompt plus the content it delivered; a stream the
// SDK aborts midway at no more than the whole answer and no less than what it received; and
// x-ratelimit-remaining-tokens (through withResponse()) shows a stream's reservation at its
// start and a plain call's settlement. The server is a real process (anyai_server_process.mjs)
// with a config of this file's own: one chat model in a class "tokens" with a token window; each
// test uses an API key of its own (Admin.CreateKey over @grpc/grpc-js).
//
// ctest runs it (tests/e2e/CMakeLists.txt, e2e_token_usage_sdk):
//   ANYAI_SERVER_BINARY=build/bin/anyai-server node --test tests/e2e/token_usage_sdk_test.mjs
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { missingPackages, startServer } from './anyai_server_process.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const PROTO_DIR = resolve(HERE, '..', '..', 'proto');
const SERVER_BINARY = process.env.ANYAI_SERVER_BINARY;
const ADMIN_TOKEN = 'e2e-token-usage-sdk-admin-token';
const CALL_TIMEOUT_MS = 30_000;
const SETTLE_TIMEOUT_MS = 30_000; // the most a poll waits for a call to settle
const PACKAGES = ['openai', '@grpc/grpc-js', '@grpc/proto-loader'];

const MODEL = 'e2e-sdk-tokens'; // builtin, class "tokens"
const TOKEN_LIMIT = 50_000; // tokens per hour
const DEFAULT_TOKEN_RESERVE = 300;

function plan(name) {
  const simple = (feature, seconds, max) =>
    `  classes { feature_class: "${feature}" windows { length { seconds: ${seconds} } ` +
    `max_requests: ${max} } }\n`;
  return `plans {
  name: "${name}"
  max_message_chars: 5000
  default_token_reserve: ${DEFAULT_TOKEN_RESERVE}
  classes {
    feature_class: "tokens"
    windows { length { seconds: 3600 } max_requests: 1000 }
    token_windows { length { seconds: 3600 } max_tokens: ${TOKEN_LIMIT} }
    max_concurrent: 8
  }
${simple('image_generation', 60, 120)}${simple('globalask', 60, 120)}\
${simple('imagine', 86400, 20)}${simple('vision', 3600, 25)}${simple('meta', 60, 100000)}}
`;
}

// The server's config (textproto), written to a temp dir.
const CONFIG = `# proto-message: anyai.v1.ServerConfig
${plan('free')}${plan('premium')}\
models { id: "${MODEL}" owned_by: "anyai-e2e" created: 1700000000 feature_class: "tokens" }
`;

// CountTokens of server/gateway/token_count.cc (the builtin's honest counts, and the gateway's
// estimate of a prompt): a run of ASCII letters and digits is one token per started 8
// characters, every other non-space code point one token; whitespace joins the next token.
function countTokens(text) {
  const bytes = Buffer.from(text, 'utf8');
  const isSpace = (b) => b === 0x20 || (b >= 0x09 && b <= 0x0d);
  const isAlnum = (b) => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) ||
    (b >= 0x61 && b <= 0x7a);
  const codePointLength = (i) => {
    const lead = bytes[i];
    let n;
    if (lead < 0x80) return 1;
    if (lead >= 0xc2 && lead <= 0xdf) n = 2;
    else if (lead >= 0xe0 && lead <= 0xef) n = 3;
    else if (lead >= 0xf0 && lead <= 0xf4) n = 4;
    else return 1;
    if (i + n > bytes.length) return 1;
    for (let k = 1; k < n; k += 1) if ((bytes[i + k] & 0xc0) !== 0x80) return 1;
    return n;
  };
  let i = 0;
  let count = 0;
  while (i < bytes.length) {
    while (i < bytes.length && isSpace(bytes[i])) i += 1;
    if (i === bytes.length) break;
    if (isAlnum(bytes[i])) {
      const start = i;
      while (i < bytes.length && i - start < 8 && isAlnum(bytes[i])) i += 1;
    } else {
      i += codePointLength(i);
    }
    count += 1;
  }
  return count;
}

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
  runTests(OpenAI, grpc, protoLoader);
}

function runTests(OpenAI, grpc, protoLoader) {
  const definition = protoLoader.loadSync(['anyai/v1/admin.proto'], {
    includeDirs: [PROTO_DIR, '/usr/include'], keepCase: true, longs: String, enums: String,
    oneofs: true,
  });
  const v1 = grpc.loadPackageDefinition(definition).anyai.v1;

  describe('token usage from the official OpenAI SDK', { timeout: 180_000 }, () => {
    let server;
    let admin;
    let baseURL;
    let configDir;

    before(async () => {
      configDir = mkdtempSync(join(tmpdir(), 'anyai-e2e-sdk-tokens-config-'));
      const configPath = join(configDir, 'config.textproto');
      writeFileSync(configPath, CONFIG);
      server = await startServer(SERVER_BINARY, {
        adminToken: ADMIN_TOKEN, prefix: 'anyai-e2e-sdk-tokens-',
        extraArgs: [`--config=${configPath}`] });
      admin = new v1.Admin(server.adminAddress, grpc.credentials.createInsecure());
      baseURL = `http://127.0.0.1:${server.httpPort}/v1`;
    });

    after(async () => {
      admin?.close();
      try {
        await server?.stop();
      } finally {
        if (configDir) rmSync(configDir, { recursive: true, force: true });
      }
    });

    const newKey = () => new Promise((resolveKey, reject) => {
      const metadata = new grpc.Metadata();
      metadata.set('authorization', `Bearer ${ADMIN_TOKEN}`);
      admin.CreateKey({ plan: 'free', label: 'token usage sdk e2e' }, metadata,
        { deadline: new Date(Date.now() + CALL_TIMEOUT_MS) }, (error, response) => {
          if (error) return reject(error);
          return resolveKey(response.key);
        });
    });
    const client = (apiKey) => new OpenAI({
      baseURL, apiKey, maxRetries: 0, timeout: CALL_TIMEOUT_MS,
    });
    const messages = (text) => [{ role: 'user', content: text }];

    // /check's class "tokens" for `key`.
    const tokensClass = async (key) => {
      const response = await fetch(`http://127.0.0.1:${server.httpPort}/check`, {
        headers: { authorization: `Bearer ${key}`, accept: 'application/json' } });
      const body = await response.text();
      assert.equal(response.status, 200, body);
      const found = JSON.parse(body).classes.find((c) => c.feature_class === 'tokens');
      assert.ok(found, `/check has no class "tokens": ${body}`);
      return found;
    };
    // The same once nothing of the class is in flight or reserved (bounded poll).
    const settled = async (key) => {
      const deadline = Date.now() + SETTLE_TIMEOUT_MS;
      for (;;) {
        const c = await tokensClass(key);
        const quiet = c.in_flight === 0 &&
          [...c.windows, ...c.token_windows].every((w) => w.reserved === 0);
        if (quiet) return c;
        assert.ok(Date.now() < deadline,
          `still in flight or reserved ${SETTLE_TIMEOUT_MS} ms after the call: ` +
          JSON.stringify(c));
        await new Promise((r) => { setTimeout(r, 50); });
      }
    };
    const contentOf = (chunks) => chunks
      .flatMap((chunk) => chunk.choices.map((choice) => choice.delta?.content ?? '')).join('');

    test('include_usage: the settled tokens equal the usage of the last chunk', async () => {
      const key = await newKey();
      const openai = client(key);
      let total = 0;
      for (const max_tokens of [undefined, 9]) {
        const text = 'Stream a story about a lighthouse keeper who counted tokens.';
        const { data: stream, response } = await openai.chat.completions.create({
          model: MODEL, messages: messages(text), stream: true,
          stream_options: { include_usage: true }, ...(max_tokens ? { max_tokens } : {}),
        }).withResponse();
        // The head shows the reservation taken at the start: prompt + max_tokens (or the
        // plan's default reserve), on top of what is already settled.
        const estimate = countTokens(text) + (max_tokens ?? DEFAULT_TOKEN_RESERVE);
        assert.equal(response.headers.get('x-ratelimit-limit-tokens'), String(TOKEN_LIMIT));
        assert.equal(response.headers.get('x-ratelimit-remaining-tokens'),
          String(TOKEN_LIMIT - total - estimate));
        const chunks = [];
        for await (const chunk of stream) chunks.push(chunk);
        const last = chunks.at(-1);
        assert.deepEqual(last.choices, [], JSON.stringify(last));
        assert.ok(last.usage, `no usage in the last chunk: ${JSON.stringify(last)}`);
        for (const chunk of chunks.slice(0, -1)) assert.ok(!chunk.usage, JSON.stringify(chunk));
        const { usage } = last;
        assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
        assert.equal(usage.prompt_tokens, countTokens(text));
        assert.equal(usage.completion_tokens, countTokens(contentOf(chunks)));
        if (max_tokens) assert.equal(usage.completion_tokens, max_tokens);
        total += usage.total_tokens;

        const c = await settled(key);
        assert.equal(c.token_windows.length, 1, JSON.stringify(c));
        assert.equal(c.token_windows[0].used, total, JSON.stringify(c));
        assert.equal(c.token_windows[0].remaining, TOKEN_LIMIT - total, JSON.stringify(c));
      }
      const c = await settled(key);
      assert.equal(c.windows[0].used, 2, JSON.stringify(c));
    });

    test('without include_usage the stream is settled at its prompt and content', async () => {
      const key = await newKey();
      const text = 'No usage chunk for me, thanks; count it all the same.';
      const stream = await client(key).chat.completions.create({
        model: MODEL, messages: messages(text), stream: true });
      const chunks = [];
      for await (const chunk of stream) chunks.push(chunk);
      assert.ok(chunks.every((chunk) => !chunk.usage), 'usage sent without include_usage');
      const c = await settled(key);
      assert.equal(c.token_windows[0].used, countTokens(text) + countTokens(contentOf(chunks)),
        JSON.stringify(c));
    });

    test('x-ratelimit-remaining-tokens moves by exactly each answer\'s usage', async () => {
      const key = await newKey();
      const openai = client(key);
      let remaining = TOKEN_LIMIT;
      for (const [text, max_tokens] of [['One', 3], ['Two words', undefined], ['Three', 12]]) {
        const { data, response } = await openai.chat.completions.create({
          model: MODEL, messages: messages(text), ...(max_tokens ? { max_tokens } : {}),
        }).withResponse();
        remaining -= data.usage.total_tokens;
        assert.equal(response.headers.get('x-ratelimit-remaining-tokens'), String(remaining),
          `after "${text}" (${JSON.stringify(data.usage)})`);
      }
      const c = await settled(key);
      assert.equal(c.token_windows[0].remaining, remaining, JSON.stringify(c));
    });

    test('a stream the SDK aborts midway is charged no more than its whole answer', async () => {
      // The builtin answers the same request the same way, so a plain call first gives the
      // whole answer's usage. The builtin writes its chunks at once, so some the client did not
      // read may still have been delivered to its socket: the charge lies between what the
      // SDK read and the whole answer.
      const key = await newKey();
      const openai = client(key);
      const text = 'Tell me a long story about a lighthouse keeper and the ships at night.';
      const whole = await openai.chat.completions.create({
        model: MODEL, messages: messages(text) });
      const before = (await settled(key)).token_windows[0].used;
      assert.equal(before, whole.usage.total_tokens);

      const stream = await openai.chat.completions.create({
        model: MODEL, messages: messages(text), stream: true });
      const chunks = [];
      for await (const chunk of stream) {
        chunks.push(chunk);
        if (contentOf(chunks)) break; // the first content: leave (the SDK aborts the request)
      }
      const c = await settled(key);
      const charged = c.token_windows[0].used - before;
      assert.ok(charged >= countTokens(text) + countTokens(contentOf(chunks)),
        `charged ${charged}, less than what the client read`);
      assert.ok(charged <= whole.usage.total_tokens,
        `charged ${charged}, more than the whole answer (${whole.usage.total_tokens})`);
      assert.equal(c.windows[0].used, 2, JSON.stringify(c));
    });
  });
}
