"""Token quotas, concurrency limits and settlement end to end, over both fronts (issue 11, SPEC §2
"Tokens, spend, concurrency"): real anyai-server processes with a config of their own, driven
over HTTP (http.client) and gRPC (grpcio), one API key per test so that every test starts from
empty windows.

  - x-ratelimit-remaining-tokens (HTTP header, gRPC metadata) moves by exactly the usage each
    answer reports, across both fronts on one key; /check and CheckKey add the usages up.
  - A stream cancelled midway (HTTP: the socket closed; gRPC: the call cancelled) is charged
    its prompt and the completion tokens the client received, and one request.
  - 1,000 gRPC streams cancelled after their first message (and 200 HTTP streams closed after
    theirs) leave no call in flight.
  - A chat whose upstream fails before any output (HTTP 500, a closed connection, silence past
    the provider's timeout) is refunded: requests and tokens as before. A second server with
    `charge_upstream_failures: true` keeps each failure charged at its estimate.
  - max_concurrent 1: while a stream is held open a second call is refused (429 /
    RESOURCE_EXHAUSTED naming the concurrency limit); once it has finished calls are admitted.
    A client that leaves a stream while its upstream is silent frees its slot without waiting
    for the upstream's next byte or timeout.

Upstream failures and held streams come from ScriptedUpstream, an OpenAI-compatible server on
127.0.0.1 in this process (http.server), configured as a PROVIDER_TYPE_OPENAI provider. What it
does is chosen by the last user message: "script:<name>" (see ScriptedUpstream). The base URL
of a provider is operator-supplied and trusted, so loopback needs no ssrf_allowlist (that list
governs user-supplied URLs only).

Nothing here asserts timing: waits are for events (a chunk, a status), and the one poll (until
a cancelled call has settled) is bounded and fails with the last figures it saw.

ctest runs it (tests/e2e/CMakeLists.txt, e2e_token_quota):
  /usr/bin/python3 tests/e2e/token_quota_test.py --server build/bin/anyai-server \
      --admin build/bin/anyai-admin --pythonpath build/python
"""

import concurrent.futures
import http.client
import http.server
import json
import os
import re
import select
import socket
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import anyai_server_process  # noqa: E402

OPTIONS, UNITTEST_ARGV = anyai_server_process.parse_args(__doc__, ("server", "admin"))

import grpc  # noqa: E402
from anyai.v1 import admin_pb2, anyai_pb2  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402

ADMIN_TOKEN = "e2e-token-quota-admin-token"
CALL_TIMEOUT_S = 30  # generous: the same test runs against the ASan build
SETTLE_TIMEOUT_S = 30  # the most a poll waits for in-flight calls to settle

# The config's classes and their limits (CONFIG below).
TOKEN_LIMIT = 20000  # class "tokens": tokens per hour
REQUEST_LIMIT = 1000  # class "tokens" and "single": requests per hour
DEFAULT_TOKEN_RESERVE = 200  # both plans
MANY_MAX_CONCURRENT = 64  # class "many"
UPSTREAM_TIMEOUT_S = 2  # provider "fake-short": the longest silence before DEADLINE_EXCEEDED
LONG_UPSTREAM_TIMEOUT_S = 60  # provider "fake-long"; more than SETTLE_TIMEOUT_S
assert LONG_UPSTREAM_TIMEOUT_S > SETTLE_TIMEOUT_S

# Models: builtin or the scripted upstream, each in one of the config's classes.
BUILTIN_TOKENS = "e2e-builtin-tokens"  # class "tokens", builtin
UPSTREAM_TOKENS = "e2e-upstream-tokens"  # class "tokens", fake-short (2 s timeout)
BUILTIN_MANY = "e2e-builtin-many"  # class "many", builtin
BUILTIN_SINGLE = "e2e-builtin-single"  # class "single", builtin
UPSTREAM_SINGLE = "e2e-upstream-single"  # class "single", fake-long (60 s timeout)


def _plan(name):
    return f"""
plans {{
  name: "{name}"
  max_message_chars: 5000
  default_token_reserve: {DEFAULT_TOKEN_RESERVE}
  classes {{
    feature_class: "tokens"
    windows {{ length {{ seconds: 3600 }} max_requests: {REQUEST_LIMIT} }}
    token_windows {{ length {{ seconds: 3600 }} max_tokens: {TOKEN_LIMIT} }}
    max_concurrent: 16
  }}
  classes {{
    feature_class: "many"
    windows {{ length {{ seconds: 3600 }} max_requests: 100000 }}
    token_windows {{ length {{ seconds: 3600 }} max_tokens: 1000000000 }}
    max_concurrent: {MANY_MAX_CONCURRENT}
  }}
  classes {{
    feature_class: "single"
    windows {{ length {{ seconds: 3600 }} max_requests: {REQUEST_LIMIT} }}
    token_windows {{ length {{ seconds: 3600 }} max_tokens: 100000 }}
    max_concurrent: 1
  }}
{_simple_class("image_generation", 60, 120)}{_simple_class("globalask", 60, 120)}\
{_simple_class("imagine", 86400, 20)}{_simple_class("vision", 3600, 25)}\
{_simple_class("meta", 60, 100000)}}}
"""


def _simple_class(feature_class, seconds, max_requests):
    return (f'  classes {{ feature_class: "{feature_class}" '
            f'windows {{ length {{ seconds: {seconds} }} max_requests: {max_requests} }} }}\n')


def config_text(upstream_base_url, charge_upstream_failures):
    models = "".join(
        f'models {{ id: "{model}" owned_by: "anyai-e2e" created: 1700000000 '
        f'feature_class: "{feature_class}" provider: "{provider}" }}\n'
        for model, feature_class, provider in (
            (BUILTIN_TOKENS, "tokens", "builtin"),
            (UPSTREAM_TOKENS, "tokens", "fake-short"),
            (BUILTIN_MANY, "many", "builtin"),
            (BUILTIN_SINGLE, "single", "builtin"),
            (UPSTREAM_SINGLE, "single", "fake-long"),
        ))
    return (
        "# proto-message: anyai.v1.ServerConfig (written by tests/e2e/token_quota_test.py)\n"
        f"charge_upstream_failures: {'true' if charge_upstream_failures else 'false'}\n"
        + _plan("free") + _plan("premium") + models +
        f'providers {{ name: "fake-short" type: PROVIDER_TYPE_OPENAI '
        f'base_url: "{upstream_base_url}" timeout {{ seconds: {UPSTREAM_TIMEOUT_S} }} }}\n'
        f'providers {{ name: "fake-long" type: PROVIDER_TYPE_OPENAI '
        f'base_url: "{upstream_base_url}" timeout {{ seconds: {LONG_UPSTREAM_TIMEOUT_S} }} }}\n')


# --- our token counter (server/gateway/token_count.h), for the estimates ----------------------

def _is_space(b):
    return b in b" \t\n\r\f\v"


def _is_alnum(b):
    return 48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122


def _code_point_length(data, i):
    lead = data[i]
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        n = 2
    elif 0xE0 <= lead <= 0xEF:
        n = 3
    elif 0xF0 <= lead <= 0xF4:
        n = 4
    else:
        return 1
    if i + n > len(data):
        return 1
    if any(data[i + k] & 0xC0 != 0x80 for k in range(1, n)):
        return 1
    return n


def count_tokens(text):
    """CountTokens of server/gateway/token_count.cc: a run of ASCII letters and digits is one
    token per started 8 characters, every other non-space code point one token; whitespace
    joins the token after it."""
    data = text.encode("utf-8")
    i, n, count = 0, len(data), 0
    while i < n:
        while i < n and _is_space(data[i]):
            i += 1
        if i == n:
            break
        if _is_alnum(data[i]):
            start = i
            while i < n and i - start < 8 and _is_alnum(data[i]):
                i += 1
        else:
            i += _code_point_length(data, i)
        count += 1
    return count


# --- the scripted upstream ----------------------------------------------------------------

def chunk_event(content=None, role=None, finish_reason=None, usage=None, choices=True):
    chunk = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk",
             "created": 1700000000, "model": "scripted"}
    if choices:
        delta = {}
        if role is not None:
            delta["role"] = role
        if content is not None:
            delta["content"] = content
        chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
    else:
        chunk["choices"] = []
    if usage is not None:
        chunk["usage"] = usage
    return json.dumps(chunk)


class ScriptedUpstream:
    """An OpenAI-compatible upstream on 127.0.0.1, answering POST /v1/chat/completions by the
    script named in the request's last user message ("script:<name>[:<id>]"):

      fail500     HTTP 500 with an OpenAI error body (plain and streamed requests)
      close       reads the request and closes the connection without answering
      hang        reads the request and sends nothing until the gateway hangs up
      cut         streams the role chunk and CUT_CONTENT, then nothing until the gateway hangs up
                  (REST would follow, but never does)
      hold:<id>   streams the role chunk and HOLD_FIRST, waits for release(<id>), then the rest,
                  finish_reason, OpenAI's usage-only chunk and [DONE]; plain: a whole answer
      (other)     a whole answer: plain JSON, or a stream of content chunks, finish_reason,
                  the usage-only chunk and [DONE]

    The socket is bound when constructed (so that its port can go into a config before any
    thread runs); serve() starts answering. Records each request's JSON body in `requests`.
    """

    CUT_CONTENT = ["Sliding windows", " count every", " token twice", " over."]
    HOLD_FIRST = "Held open"
    REST = [" until", " the test", " lets", " it finish."]
    # The usage the upstream reports for whole answers: its own tokenizer, not ours.
    UPSTREAM_USAGE = {"prompt_tokens": 11, "completion_tokens": 13, "total_tokens": 24}
    MAX_WAIT_S = 60  # the longest any script waits, so a broken test never hangs forever

    def __init__(self):
        self.requests = []
        self._lock = threading.Lock()
        self._holds = {}
        self._stopping = threading.Event()
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with upstream._lock:
                    upstream.requests.append(body)
                if self.path != "/v1/chat/completions":
                    return self._json(404, {"error": {"message": "no such path"}})
                script = ""
                for message in body.get("messages", []):
                    if message.get("role") == "user":
                        script = message.get("content", "")
                match = re.search(r"script:([a-z0-9]+)(?::(\S+))?", script)
                name, arg = (match.group(1), match.group(2)) if match else ("", None)
                stream = bool(body.get("stream"))
                if name == "fail500":
                    return self._json(500, {"error": {"message": "scripted upstream failure",
                                                      "type": "server_error"}})
                if name == "close":
                    self.close_connection = True
                    return
                if name == "hang":
                    return self._wait_for_hangup()
                if not stream:
                    return self._json(200, {
                        "id": "chatcmpl-scripted", "object": "chat.completion",
                        "created": 1700000000, "model": body.get("model", ""),
                        "choices": [{"index": 0, "finish_reason": "stop", "message": {
                            "role": "assistant",
                            "content": upstream.HOLD_FIRST + "".join(upstream.REST)}}],
                        "usage": upstream.UPSTREAM_USAGE})
                self._start_stream()
                self._event(chunk_event(role="assistant", content=""))
                if name == "cut":
                    for piece in upstream.CUT_CONTENT:
                        self._event(chunk_event(content=piece))
                    return self._wait_for_hangup()
                if name == "hold":
                    self._event(chunk_event(content=upstream.HOLD_FIRST))
                    upstream._hold(arg).wait(upstream.MAX_WAIT_S)
                    pieces = upstream.REST
                else:
                    pieces = [upstream.HOLD_FIRST] + upstream.REST
                for piece in pieces:
                    self._event(chunk_event(content=piece))
                self._event(chunk_event(finish_reason="stop"))
                self._event(chunk_event(choices=False, usage=upstream.UPSTREAM_USAGE))
                self._event("[DONE]")
                self._chunk(b"")

            def _json(self, status, value):
                data = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _start_stream(self):
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()

            def _chunk(self, data):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _event(self, data):
                self._chunk(f"data: {data}\n\n".encode())

            def _wait_for_hangup(self):
                """Sends nothing until the peer closes the connection (or the test ends)."""
                self.close_connection = True
                deadline = time.monotonic() + upstream.MAX_WAIT_S
                while not upstream._stopping.is_set() and time.monotonic() < deadline:
                    readable, _, _ = select.select([self.connection], [], [], 0.1)
                    if readable:
                        try:
                            if not self.connection.recv(1, socket.MSG_PEEK):
                                return
                        except OSError:
                            return

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                # The gateway drops connections it gave up on (a cancelled or timed-out call):
                # expected, not worth a traceback. Anything else is printed as usual.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = None

    def _hold(self, hold_id):
        with self._lock:
            return self._holds.setdefault(hold_id, threading.Event())

    def release(self, hold_id):
        self._hold(hold_id).set()

    def serve(self):
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        self._stopping.set()
        with self._lock:
            for event in self._holds.values():
                event.set()
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()


# --- HTTP and gRPC helpers -----------------------------------------------------------------

def bearer(token):
    return (("authorization", "Bearer " + token),)


def metadata_dict(metadata):
    return {m.key: m.value for m in (metadata or ())}


def chat_body(model, text, max_tokens=None, stream=False):
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if stream:
        body["stream"] = True
    return body


def chat_request(model, text, max_tokens=None):
    request = anyai_pb2.ChatCompletionRequest(
        model=model, messages=[anyai_pb2.ChatMessage(role="user", content=text)])
    if max_tokens is not None:
        request.max_tokens = max_tokens
    return request


class SseReader:
    """The `data:` payloads of a text/event-stream response, one at a time."""

    def __init__(self, response):
        self.response = response
        self.buffer = b""

    def next(self):
        """The next event's data, or None at the end of the body."""
        while b"\n\n" not in self.buffer:
            data = self.response.read1(65536)
            if not data:
                return None
            self.buffer += data
        event, self.buffer = self.buffer.split(b"\n\n", 1)
        lines = [line[len(b"data:"):].strip() for line in event.split(b"\n")
                 if line.startswith(b"data:")]
        return b"\n".join(lines).decode("utf-8")


def ietf_items(value):
    """A RateLimit or RateLimit-Policy field: {name: {param: value}} of its list items."""
    items = {}
    for item in filter(None, (part.strip() for part in (value or "").split(","))):
        name, *params = item.split(";")
        items[name.strip().strip('"')] = dict(
            (p.split("=", 1)[0].strip(), p.split("=", 1)[1].strip().strip('"')) for p in params)
    return items


class Server:
    """One anyai-server with the test config, and clients for both of its fronts."""

    def __init__(self, upstream, charge_upstream_failures):
        self.config_dir = tempfile.mkdtemp(prefix="anyai-e2e-token-config-")
        self.config_path = os.path.join(self.config_dir, "config.textproto")
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(config_text(upstream.base_url, charge_upstream_failures))
        self.process = anyai_server_process.ServerProcess(
            OPTIONS.server, admin_token=ADMIN_TOKEN, extra_args=["--config=" + self.config_path])
        self.channel = None

    def start(self):
        self.process.start()

    def connect(self):
        self.channel = grpc.insecure_channel(self.process.grpc_address)
        # The Admin service has its own listener (admin_listen), not the public port.
        self.admin_channel = grpc.insecure_channel(self.process.admin_address)

        def unary(service, method, request_cls, response_cls):
            channel = self.admin_channel if service == "Admin" else self.channel
            return channel.unary_unary(
                f"/anyai.v1.{service}/{method}", request_serializer=request_cls.SerializeToString,
                response_deserializer=response_cls.FromString)

        self.create_chat = unary("AnyAI", "CreateChatCompletion", anyai_pb2.ChatCompletionRequest,
                                 anyai_pb2.ChatCompletion)
        self.stream_chat = self.channel.unary_stream(
            "/anyai.v1.AnyAI/StreamChatCompletion",
            request_serializer=anyai_pb2.ChatCompletionRequest.SerializeToString,
            response_deserializer=anyai_pb2.ChatCompletionChunk.FromString)
        self.check_key = unary("AnyAI", "CheckKey", anyai_pb2.CheckKeyRequest,
                               anyai_pb2.CheckKeyResponse)
        self.admin_create_key = unary("Admin", "CreateKey", admin_pb2.CreateKeyRequest,
                                      admin_pb2.CreateKeyResponse)

    def stop(self):
        if self.channel is not None:
            self.channel.close()
            self.admin_channel.close()
        try:
            self.process.stop()
        finally:
            for name in os.listdir(self.config_dir):
                os.unlink(os.path.join(self.config_dir, name))
            os.rmdir(self.config_dir)

    def new_key(self, label):
        response = self.admin_create_key(admin_pb2.CreateKeyRequest(plan="free", label=label),
                                         metadata=bearer(ADMIN_TOKEN), timeout=CALL_TIMEOUT_S)
        return response.key

    def http(self):
        return http.client.HTTPConnection("127.0.0.1", self.process.http_port,
                                          timeout=CALL_TIMEOUT_S)

    def post_chat(self, key, body):
        """(status, headers {lower-case name: value}, parsed JSON body) of a plain chat."""
        conn = self.http()
        try:
            conn.request("POST", "/v1/chat/completions", json.dumps(body),
                         {"authorization": "Bearer " + key, "content-type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            headers = {k.lower(): v for k, v in response.getheaders()}
            return response.status, headers, json.loads(data) if data else None
        finally:
            conn.close()

    def open_stream(self, key, body):
        """(connection, response, SseReader) of a streamed chat whose head has arrived."""
        conn = self.http()
        conn.request("POST", "/v1/chat/completions", json.dumps(body),
                     {"authorization": "Bearer " + key, "content-type": "application/json"})
        response = conn.getresponse()
        return conn, response, SseReader(response)

    def check_json(self, key):
        conn = self.http()
        try:
            conn.request("GET", "/check",
                         headers={"authorization": "Bearer " + key, "accept": "application/json"})
            response = conn.getresponse()
            data = response.read()
            if response.status != 200:
                raise AssertionError(f"/check answered {response.status}: {data!r}")
            return json.loads(data)
        finally:
            conn.close()

    def class_json(self, key, feature_class):
        for c in self.check_json(key)["classes"]:
            if c["feature_class"] == feature_class:
                return c
        raise AssertionError(f"/check has no class {feature_class}")

    def class_grpc(self, key, feature_class):
        response = self.check_key(anyai_pb2.CheckKeyRequest(), metadata=bearer(key),
                                  timeout=CALL_TIMEOUT_S)
        for c in response.classes:
            if c.feature_class == feature_class:
                return c
        raise AssertionError(f"CheckKey has no class {feature_class}: {response}")

    def settled_class(self, key, feature_class):
        """/check's class once no call of it is in flight and nothing is reserved (bounded)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            c = self.class_json(key, feature_class)
            quiet = (c["in_flight"] == 0 and
                     all(w["reserved"] == 0 for w in c["windows"] + c["token_windows"]))
            if quiet:
                return c
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"class {feature_class} still has calls in flight or reserved units "
                    f"{SETTLE_TIMEOUT_S} s after its calls ended: {json.dumps(c)}")
            time.sleep(0.05)


def tearDownModule():
    for stop in reversed(_MODULE_CLEANUPS):
        stop()


_MODULE_CLEANUPS = []
SERVERS = {}


def setUpModule():
    # The upstream's socket is bound first (its port goes into the configs), both servers are
    # started before any thread of this process runs (ServerProcess forks with a preexec_fn),
    # and only then does the upstream start answering.
    upstream = ScriptedUpstream()
    _MODULE_CLEANUPS.append(upstream.stop)
    refunding = Server(upstream, charge_upstream_failures=False)
    charging = Server(upstream, charge_upstream_failures=True)
    refunding.start()
    _MODULE_CLEANUPS.append(refunding.stop)
    charging.start()
    _MODULE_CLEANUPS.append(charging.stop)
    upstream.serve()
    refunding.connect()
    charging.connect()
    SERVERS.update(upstream=upstream, refunding=refunding, charging=charging)


class TokenQuotaTest(unittest.TestCase):

    def setUp(self):
        self.upstream = SERVERS["upstream"]
        self.server = SERVERS["refunding"]

    def new_key(self, server=None):
        return (server or self.server).new_key(self.id())

    def assert_quiet(self, c):
        self.assertEqual(c["in_flight"], 0, c)
        for w in c["windows"] + c["token_windows"]:
            self.assertEqual(w["reserved"], 0, c)

    # --- 1. x-ratelimit-remaining-tokens and /check over both fronts -----------------------

    def test_remaining_tokens_move_by_exactly_the_reported_usage_over_both_fronts(self):
        key = self.new_key()
        calls = [("http", "What is a sliding window?", 5),
                 ("grpc", "Count my tokens exactly, please.", 17),
                 ("http", "A longer question about reservations and settlements", None),
                 ("grpc", "And one more over gRPC without max_tokens", None),
                 ("http", "Short", 40),
                 ("grpc", "hi", 1)]
        remaining = TOKEN_LIMIT
        total = 0
        for front, text, max_tokens in calls:
            with self.subTest(front=front, text=text):
                if front == "http":
                    status, headers, body = self.server.post_chat(
                        key, chat_body(BUILTIN_TOKENS, text, max_tokens))
                    self.assertEqual(status, 200, body)
                    usage = body["usage"]
                    used = usage["total_tokens"]
                    self.assertEqual(used, usage["prompt_tokens"] + usage["completion_tokens"])
                    prompt = usage["prompt_tokens"]
                else:
                    response, call = self.server.create_chat.with_call(
                        chat_request(BUILTIN_TOKENS, text, max_tokens), metadata=bearer(key),
                        timeout=CALL_TIMEOUT_S)
                    headers = metadata_dict(call.initial_metadata())
                    used = response.usage.total_tokens
                    prompt = response.usage.prompt_tokens
                    self.assertEqual(
                        used, response.usage.prompt_tokens + response.usage.completion_tokens)
                self.assertEqual(prompt, count_tokens(text), "the builtin counts as we do")
                self.assertGreater(used, 0)
                total += used
                remaining -= used
                self.assertEqual(headers.get("x-ratelimit-limit-tokens"), str(TOKEN_LIMIT),
                                 headers)
                self.assertEqual(headers.get("x-ratelimit-remaining-tokens"), str(remaining),
                                 f"after {total} tokens in all: {headers}")
                self.assertRegex(headers.get("x-ratelimit-reset-tokens", ""), r"^[0-9hms.]+s$")
                # The IETF fields carry the same figures.
                policy = ietf_items(headers.get("ratelimit-policy"))
                state = ietf_items(headers.get("ratelimit"))
                self.assertEqual(policy.get("tokens-1h", {}).get("q"), str(TOKEN_LIMIT), headers)
                self.assertEqual(state.get("tokens-1h", {}).get("r"), str(remaining), headers)

        c = self.server.class_json(key, "tokens")
        self.assert_quiet(c)
        self.assertEqual(len(c["token_windows"]), 1, c)
        tokens = c["token_windows"][0]
        self.assertEqual(tokens["window_seconds"], 3600, c)
        self.assertEqual(tokens["used"], total, c)
        self.assertEqual(tokens["limit"], TOKEN_LIMIT, c)
        self.assertEqual(tokens["remaining"], TOKEN_LIMIT - total, c)
        self.assertEqual(c["windows"][0]["used"], len(calls), c)
        g = self.server.class_grpc(key, "tokens")
        self.assertEqual([w.used for w in g.token_windows], [total], g)
        self.assertEqual([w.reserved for w in g.token_windows], [0], g)
        self.assertEqual(g.in_flight, 0, g)

    def test_a_settled_stream_reports_its_reservation_and_is_charged_its_usage(self):
        # A stream's head carries its figures at its start: its reservation (prompt +
        # max_tokens) taken; its end settles to the usage in its last chunk.
        key = self.new_key()
        text = "Stream me an answer about token windows."
        conn, response, events = self.server.open_stream(
            key, chat_body(BUILTIN_TOKENS, text, max_tokens=30, stream=True))
        try:
            self.assertEqual(response.status, 200)
            estimate = count_tokens(text) + 30
            self.assertEqual(response.getheader("x-ratelimit-remaining-tokens"),
                             str(TOKEN_LIMIT - estimate), response.getheaders())
            payloads = []
            while (data := events.next()) is not None:
                payloads.append(data)
        finally:
            conn.close()
        self.assertEqual(payloads[-1], "[DONE]")
        # Without stream_options.include_usage the client gets no usage; the gateway counts
        # the builtin's, which is the prompt by our counter plus the content it streamed.
        content = "".join(
            choice["delta"].get("content") or ""
            for chunk in map(json.loads, payloads[:-1]) for choice in chunk["choices"])
        c = self.server.settled_class(key, "tokens")
        self.assertEqual(c["token_windows"][0]["used"], count_tokens(text) + count_tokens(content),
                         c)
        self.assertEqual(c["windows"][0]["used"], 1, c)

    # --- 2. a stream cancelled midway ------------------------------------------------------

    @staticmethod
    def whole_answer_tokens(text):
        # What the cut stream would have cost had its upstream gone on: the prompt and all the
        # content the upstream has (CUT_CONTENT, then REST), by our counter.
        return count_tokens(text) + sum(
            map(count_tokens, ScriptedUpstream.CUT_CONTENT + ScriptedUpstream.REST))

    def cut_stream_expected_tokens(self, text, received):
        # No usage chunk came: the prompt by our counter and the completion tokens delivered.
        self.assertEqual(received, ScriptedUpstream.CUT_CONTENT)
        return count_tokens(text) + sum(map(count_tokens, received))

    def test_http_stream_closed_midway_is_charged_what_it_received(self):
        key = self.new_key()
        text = "script:cut Tell me a long story about a lighthouse keeper and the sea."
        conn, response, events = self.server.open_stream(
            key, chat_body(UPSTREAM_TOKENS, text, stream=True))
        received = []
        try:
            self.assertEqual(response.status, 200)
            # The head shows the reservation: prompt + default_token_reserve.
            self.assertEqual(response.getheader("x-ratelimit-remaining-tokens"),
                             str(TOKEN_LIMIT - count_tokens(text) - DEFAULT_TOKEN_RESERVE))
            while len(received) < len(ScriptedUpstream.CUT_CONTENT):
                data = events.next()
                self.assertIsNotNone(data, "the stream ended early")
                for choice in json.loads(data)["choices"]:
                    if choice["delta"].get("content"):
                        received.append(choice["delta"]["content"])
        finally:
            conn.close()  # midway: the upstream has more to say, but says nothing yet
        c = self.server.settled_class(key, "tokens")
        expected = self.cut_stream_expected_tokens(text, received)
        self.assertEqual(c["token_windows"][0]["used"], expected, c)
        self.assertLess(c["token_windows"][0]["used"], self.whole_answer_tokens(text), c)
        self.assertEqual(c["windows"][0]["used"], 1, c)

    def test_grpc_stream_cancelled_midway_is_charged_what_it_received(self):
        key = self.new_key()
        text = "script:cut Tell me a long story about a lighthouse keeper, over gRPC."
        call = self.server.stream_chat(chat_request(UPSTREAM_TOKENS, text), metadata=bearer(key),
                                       timeout=CALL_TIMEOUT_S)
        received = []
        try:
            head = metadata_dict(call.initial_metadata())
            self.assertEqual(head.get("x-ratelimit-remaining-tokens"),
                             str(TOKEN_LIMIT - count_tokens(text) - DEFAULT_TOKEN_RESERVE), head)
            while len(received) < len(ScriptedUpstream.CUT_CONTENT):
                chunk = next(call)
                for choice in chunk.choices:
                    if choice.delta.content:
                        received.append(choice.delta.content)
        finally:
            call.cancel()
        self.assertEqual(call.code(), grpc.StatusCode.CANCELLED)
        c = self.server.settled_class(key, "tokens")
        self.assertEqual(c["token_windows"][0]["used"],
                         self.cut_stream_expected_tokens(text, received), c)
        self.assertLess(c["token_windows"][0]["used"], self.whole_answer_tokens(text), c)
        self.assertEqual(c["windows"][0]["used"], 1, c)

    def test_upstream_stream_to_its_end_is_charged_the_upstream_usage(self):
        # The control for the two above: the same upstream, not cut, reports its own usage in
        # its last chunk, and that is what is charged (not our counter's figures).
        key = self.new_key()
        text = "script:whole Tell me a story."
        call = self.server.stream_chat(chat_request(UPSTREAM_TOKENS, text, max_tokens=100),
                                       metadata=bearer(key), timeout=CALL_TIMEOUT_S)
        chunks = list(call)
        self.assertEqual(call.code(), grpc.StatusCode.OK)
        self.assertEqual(chunks[-1].usage.total_tokens,
                         ScriptedUpstream.UPSTREAM_USAGE["total_tokens"], chunks[-1])
        c = self.server.settled_class(key, "tokens")
        self.assertEqual(c["token_windows"][0]["used"],
                         ScriptedUpstream.UPSTREAM_USAGE["total_tokens"], c)
        self.assertEqual(c["windows"][0]["used"], 1, c)
        self.assertTrue(self.upstream.requests[-1].get("stream_options", {}).get("include_usage"),
                        "the gateway asks a streaming upstream for its usage")

    # --- 3. many cancelled streams leave nothing in flight ---------------------------------

    def test_1000_cancelled_grpc_streams_leave_nothing_in_flight(self):
        key = self.new_key()
        streams, parallel = 1000, 8
        request = chat_request(BUILTIN_MANY, "Tell me a long story about a lighthouse keeper "
                               "who counted every ship that passed in the night.")

        def one(_):
            call = self.server.stream_chat(request, metadata=bearer(key), timeout=CALL_TIMEOUT_S)
            try:
                next(call)  # the first message: the call was admitted and has started
            finally:
                call.cancel()
            return call.code()

        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            codes = list(pool.map(one, range(streams)))
        # Each finished (OK) or was cancelled; none was refused, as a leaked slot would
        # eventually make it (max_concurrent is MANY_MAX_CONCURRENT).
        self.assertEqual(set(codes) - {grpc.StatusCode.OK, grpc.StatusCode.CANCELLED}, set(),
                         codes)
        c = self.server.settled_class(key, "many")
        self.assertEqual(c["max_concurrent"], MANY_MAX_CONCURRENT, c)
        self.assertEqual(c["windows"][0]["used"], streams, c)

    def test_200_http_streams_closed_after_their_first_event_leave_nothing_in_flight(self):
        key = self.new_key()
        streams, parallel = 200, 8
        body = chat_body(BUILTIN_MANY, "Tell me a long story about a lighthouse keeper.",
                         stream=True)

        def one(_):
            conn, response, events = self.server.open_stream(key, body)
            try:
                if response.status == 200:
                    events.next()
                return response.status
            finally:
                conn.close()

        with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
            statuses = list(pool.map(one, range(streams)))
        self.assertEqual(set(statuses), {200}, statuses)
        c = self.server.settled_class(key, "many")
        self.assertEqual(c["windows"][0]["used"], streams, c)

    # --- 4. upstream failures: refunded, or charged when configured ----------------------

    FAILURES = [
        # (script, max_tokens, HTTP status, gRPC code)
        ("fail500", 50, 502, grpc.StatusCode.UNAVAILABLE),
        ("close", 50, 502, grpc.StatusCode.UNAVAILABLE),
        ("hang", None, 504, grpc.StatusCode.DEADLINE_EXCEEDED),
    ]

    def fail_every_way(self, server, key):
        """Fails each FAILURES script over HTTP (plain and streamed) and gRPC (unary and
        streamed); returns [(estimate, remaining-tokens header or None)] per failed call."""
        calls = []
        for script, max_tokens, http_status, grpc_code in self.FAILURES:
            text = f"script:{script} hello upstream"
            estimate = count_tokens(text) + (max_tokens or DEFAULT_TOKEN_RESERVE)
            with self.subTest(script=script, front="http"):
                status, headers, body = server.post_chat(
                    key, chat_body(UPSTREAM_TOKENS, text, max_tokens))
                self.assertEqual(status, http_status, body)
                self.assertEqual(body["error"]["type"], "server_error", body)
                calls.append((estimate, headers.get("x-ratelimit-remaining-tokens")))
            with self.subTest(script=script, front="http stream"):
                conn, response, events = server.open_stream(
                    key, chat_body(UPSTREAM_TOKENS, text, max_tokens, stream=True))
                try:
                    payloads = [response.read().decode()] if response.status != 200 else []
                    while response.status == 200 and (data := events.next()) is not None:
                        payloads.append(data)
                finally:
                    conn.close()
                self.assertTrue(response.status == http_status or response.status == 200,
                                response.status)
                self.assertNotIn("[DONE]", payloads)
                self.assertTrue(payloads and "error" in json.loads(payloads[-1]), payloads)
                calls.append((estimate, None))
            with self.subTest(script=script, front="grpc"):
                with self.assertRaises(grpc.RpcError) as caught:
                    server.create_chat(chat_request(UPSTREAM_TOKENS, text, max_tokens),
                                       metadata=bearer(key), timeout=CALL_TIMEOUT_S)
                self.assertEqual(caught.exception.code(), grpc_code, caught.exception.details())
                trailers = metadata_dict(caught.exception.trailing_metadata())
                calls.append((estimate, trailers.get("x-ratelimit-remaining-tokens")))
            with self.subTest(script=script, front="grpc stream"):
                call = server.stream_chat(chat_request(UPSTREAM_TOKENS, text, max_tokens),
                                          metadata=bearer(key), timeout=CALL_TIMEOUT_S)
                with self.assertRaises(grpc.RpcError) as caught:
                    list(call)
                self.assertEqual(caught.exception.code(), grpc_code, caught.exception.details())
                calls.append((estimate, None))
        return calls

    def test_upstream_failures_before_any_output_are_refunded(self):
        key = self.new_key()
        calls = self.fail_every_way(self.server, key)
        for _, remaining in calls:
            if remaining is not None:  # the failed call's own figures, after its refund
                self.assertEqual(remaining, str(TOKEN_LIMIT), calls)
        c = self.server.settled_class(key, "tokens")
        self.assertEqual(c["windows"][0]["used"], 0, c)
        self.assertEqual(c["token_windows"][0]["used"], 0, c)
        self.assertEqual(c["token_windows"][0]["remaining"], TOKEN_LIMIT, c)
        # The key still counts what succeeds (so the zeros above are refunds, not blindness).
        status, _, body = self.server.post_chat(key, chat_body(BUILTIN_TOKENS, "now succeed"))
        self.assertEqual(status, 200, body)
        c = self.server.settled_class(key, "tokens")
        self.assertEqual(c["windows"][0]["used"], 1, c)
        self.assertEqual(c["token_windows"][0]["used"], body["usage"]["total_tokens"], c)

    def test_upstream_failures_stay_charged_with_charge_upstream_failures(self):
        server = SERVERS["charging"]
        key = self.new_key(server)
        calls = self.fail_every_way(server, key)
        charged = 0
        for estimate, remaining in calls:
            charged += estimate
            if remaining is not None:  # the failed call keeps its estimate
                self.assertEqual(remaining, str(TOKEN_LIMIT - charged), calls)
        c = server.settled_class(key, "tokens")
        self.assertEqual(c["windows"][0]["used"], len(calls), c)
        self.assertEqual(c["token_windows"][0]["used"], charged, c)

    # --- 6. a concurrency limit ----------------------------------------------------------

    def assert_refused_for_concurrency(self, key):
        status, headers, body = self.server.post_chat(key, chat_body(BUILTIN_SINGLE, "me too"))
        self.assertEqual(status, 429, body)
        self.assertEqual(body["error"]["code"], "rate_limit_exceeded", body)
        self.assertRegex(body["error"]["message"], r"at most 1 calls? in flight", body)
        self.assertIn("retry-after", headers)
        self.assertEqual(ietf_items(headers.get("ratelimit")).get("concurrency", {}).get("r"),
                         "0", headers)
        self.assertEqual(
            ietf_items(headers.get("ratelimit-policy")).get("concurrency", {}).get("q"), "1",
            headers)

        with self.assertRaises(grpc.RpcError) as caught:
            self.server.create_chat(chat_request(BUILTIN_SINGLE, "me too"), metadata=bearer(key),
                                    timeout=CALL_TIMEOUT_S)
        error = caught.exception
        self.assertEqual(error.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, error.details())
        self.assertRegex(error.details(), r"at most 1 calls? in flight")
        details = metadata_dict(error.trailing_metadata()).get("grpc-status-details-bin")
        self.assertIsNotNone(details, "no google.rpc.Status details")
        info = None
        for detail in status_pb2.Status.FromString(details).details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
        self.assertIsNotNone(info, "no ErrorInfo")
        self.assertEqual(info.reason, "RATE_LIMIT_EXCEEDED")
        self.assertEqual(info.metadata["limit_kind"], "concurrency", info)
        self.assertEqual(info.metadata["feature_class"], "single", info)

    def assert_admitted_again(self, key):
        status, _, body = self.server.post_chat(key, chat_body(BUILTIN_SINGLE, "my turn now"))
        self.assertEqual(status, 200, body)
        response = self.server.create_chat(chat_request(BUILTIN_SINGLE, "and mine"),
                                           metadata=bearer(key), timeout=CALL_TIMEOUT_S)
        self.assertTrue(response.choices[0].message.content)

    def test_max_concurrent_refuses_a_second_call_while_an_http_stream_is_open(self):
        key = self.new_key()
        hold = f"http-{id(self)}"
        conn, response, events = self.server.open_stream(
            key, chat_body(UPSTREAM_SINGLE, f"script:hold:{hold} take your time", stream=True))
        try:
            self.assertEqual(response.status, 200)
            events.next()  # the role
            first = json.loads(events.next())  # the first content chunk, then it waits
            self.assertEqual(first["choices"][0]["delta"]["content"], ScriptedUpstream.HOLD_FIRST)
            c = self.server.class_json(key, "single")
            self.assertEqual((c["in_flight"], c["max_concurrent"]), (1, 1), c)

            self.assert_refused_for_concurrency(key)
            c = self.server.class_json(key, "single")
            self.assertEqual(c["windows"][0]["used"], 1, f"refusals count nothing: {c}")

            self.upstream.release(hold)
            payloads = []
            while (data := events.next()) is not None:
                payloads.append(data)
            self.assertEqual(payloads[-1], "[DONE]")
        finally:
            self.upstream.release(hold)
            conn.close()
        # The stream has ended, so its slot is free before [DONE] reaches the client.
        self.assert_admitted_again(key)
        c = self.server.settled_class(key, "single")
        self.assertEqual(c["windows"][0]["used"], 3, c)

    def test_max_concurrent_refuses_a_second_call_while_a_grpc_stream_is_open(self):
        key = self.new_key()
        hold = f"grpc-{id(self)}"
        call = self.server.stream_chat(
            chat_request(UPSTREAM_SINGLE, f"script:hold:{hold} take your time"),
            metadata=bearer(key), timeout=CALL_TIMEOUT_S)
        try:
            next(call)  # the role
            first = next(call)
            self.assertEqual(first.choices[0].delta.content, ScriptedUpstream.HOLD_FIRST)
            self.assertEqual(self.server.class_grpc(key, "single").in_flight, 1)

            self.assert_refused_for_concurrency(key)

            self.upstream.release(hold)
            rest = list(call)
            self.assertEqual(call.code(), grpc.StatusCode.OK)
            self.assertTrue(rest[-1].choices[0].finish_reason, rest)
        finally:
            self.upstream.release(hold)
            call.cancel()
        # The call's status came after its handler had settled and freed the slot.
        self.assert_admitted_again(key)
        c = self.server.settled_class(key, "single")
        self.assertEqual(c["windows"][0]["used"], 3, c)

    def test_a_client_that_leaves_a_silent_stream_frees_its_slot_without_the_upstream(self):
        # The client goes away while the upstream (fake-long: 60 s timeout, more than
        # SETTLE_TIMEOUT_S) is silent and stays so: the call must still end, settle what the
        # client received and free its slot, without waiting for the upstream's next byte or
        # its timeout ("the in-flight slot is released on every path ... client gone").
        for front in ("http", "grpc"):
            with self.subTest(front=front):
                key = self.new_key()
                hold = f"gone-{front}-{id(self)}"
                text = f"script:hold:{hold} I will not wait"
                try:
                    if front == "http":
                        conn, response, events = self.server.open_stream(
                            key, chat_body(UPSTREAM_SINGLE, text, stream=True))
                        try:
                            events.next()  # the role
                            events.next()  # HOLD_FIRST; the upstream now says nothing
                        finally:
                            conn.close()
                    else:
                        call = self.server.stream_chat(chat_request(UPSTREAM_SINGLE, text),
                                                       metadata=bearer(key),
                                                       timeout=CALL_TIMEOUT_S)
                        try:
                            next(call)
                            next(call)
                        finally:
                            call.cancel()
                    c = self.server.settled_class(key, "single")
                    self.assertEqual(c["token_windows"][0]["used"],
                                     count_tokens(text) + count_tokens(ScriptedUpstream.HOLD_FIRST),
                                     c)
                    self.assert_admitted_again(key)
                finally:
                    self.upstream.release(hold)


if __name__ == "__main__":
    unittest.main(argv=UNITTEST_ARGV, verbosity=2)
