"""Shutdown ordering end to end (issue 12, SPEC §10): a real anyai-server gets SIGTERM.

  - An idle gRPC client (a connected channel, no call) does not hold the shutdown for the
    grace period: the process exits in well under shutdown_grace (a bound, not a benchmark).
  - With drain_delay, /readyz turns 503 first while calls are still served, gRPC and HTTP.
  - A gRPC stream still open at the grace deadline (its upstream holds it) ends with a status
    the client sees (CANCELLED or UNAVAILABLE), and the process then exits 0.
  - A second SIGTERM during the drain ends the process at once, status 128 + 15, after a line
    on stderr.

The held stream comes from a tiny OpenAI-compatible upstream in this process (http.server)
that sends one chunk and then nothing until the test ends or the gateway hangs up.

  /usr/bin/python3 tests/e2e/shutdown_test.py --server build/bin/anyai-server \\
      --admin build/bin/anyai-admin --pythonpath build/python
"""

import http.client
import http.server
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import anyai_server_process

OPTIONS, UNITTEST_ARGV = anyai_server_process.parse_args(__doc__, ("server", "admin"))

import grpc  # noqa: E402

from anyai.v1 import admin_pb2, anyai_pb2  # noqa: E402

ADMIN_TOKEN = "e2e-shutdown-admin-token"
CALL_TIMEOUT_S = 20.0
# The bound on the shutdown with an idle client: well under GRACE_S.
GRACE_S = 10
IDLE_SHUTDOWN_BOUND_S = 5.0
# How long the process may take to exit after a second SIGTERM (at once, in fact).
SECOND_SIGNAL_BOUND_S = 5.0
HELD_MODEL = "e2e-held"


class HeldUpstream:
    """An OpenAI-compatible upstream whose streams send one chunk, then hold until released."""

    def __init__(self):
        self.released = threading.Event()
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", "0")))
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                chunk = {"id": "chatcmpl-held", "object": "chat.completion.chunk",
                         "created": 1700000000, "model": HELD_MODEL,
                         "choices": [{"index": 0, "finish_reason": None,
                                      "delta": {"role": "assistant", "content": "held"}}]}
                data = f"data: {json.dumps(chunk)}\n\n".encode()
                try:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                except OSError:
                    return
                upstream.released.wait(60)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def bearer(token):
    return (("authorization", "Bearer " + token),)


class ShutdownTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.upstream = HeldUpstream()
        cls.addClassCleanup(cls.upstream.stop)

    def start_server(self, drain_delay_s=0, grace_s=GRACE_S):
        config_dir = tempfile.mkdtemp(prefix="anyai-e2e-shutdown-")
        path = os.path.join(config_dir, "server.textproto")
        with open(path, "w") as f:
            f.write(f"drain_delay {{ seconds: {drain_delay_s} }}\n"
                    f"shutdown_grace {{ seconds: {grace_s} }}\n"
                    f'models {{ id: "{HELD_MODEL}" owned_by: "anyai-e2e" created: 1700000000 '
                    f'feature_class: "llm" provider: "held" }}\n'
                    f'providers {{ name: "held" type: PROVIDER_TYPE_OPENAI '
                    f'base_url: "{self.upstream.base_url}" timeout {{ seconds: 60 }} }}\n')
        server = anyai_server_process.ServerProcess(OPTIONS.server, admin_token=ADMIN_TOKEN,
                                                    extra_args=["--config=" + path])
        server.start()
        self.addCleanup(lambda: (os.unlink(path), os.rmdir(config_dir)))
        self.addCleanup(server.stop, check_exit=False)
        return server

    def channel(self, address):
        channel = grpc.insecure_channel(address)
        self.addCleanup(channel.close)
        return channel

    @staticmethod
    def list_models(channel):
        return channel.unary_unary(
            "/anyai.v1.AnyAI/ListModels",
            request_serializer=anyai_pb2.ListModelsRequest.SerializeToString,
            response_deserializer=anyai_pb2.ListModelsResponse.FromString)(
                anyai_pb2.ListModelsRequest(), timeout=CALL_TIMEOUT_S)

    @staticmethod
    def readyz(server):
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=CALL_TIMEOUT_S)
        try:
            conn.request("GET", "/readyz", headers={"host": "localhost"})
            return conn.getresponse().status
        finally:
            conn.close()

    @staticmethod
    def wait_exit(server, bound_s):
        """The exit status and how long the process took to exit, failing past `bound_s`."""
        began = time.monotonic()
        code = server.process.wait(timeout=bound_s + 30)
        return code, time.monotonic() - began

    def test_an_idle_grpc_client_does_not_hold_the_shutdown(self):
        server = self.start_server()
        channel = self.channel(server.grpc_address)
        self.assertGreater(len(self.list_models(channel).data), 0)  # connected, then idle
        server.process.send_signal(signal.SIGTERM)
        code, took = self.wait_exit(server, GRACE_S)
        self.assertEqual(code, 0, server.stderr_text())
        self.assertLess(took, IDLE_SHUTDOWN_BOUND_S,
                        f"an idle client held the shutdown for {took:.1f} s of the {GRACE_S} s "
                        "grace")

    def test_readyz_turns_503_first_and_calls_are_served_during_the_drain(self):
        server = self.start_server(drain_delay_s=3)
        channel = self.channel(server.grpc_address)
        self.assertEqual(self.readyz(server), 200)
        self.list_models(channel)
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 2
        while self.readyz(server) != 503:
            self.assertLess(time.monotonic(), deadline, "/readyz did not turn 503")
            time.sleep(0.02)
        # Still in the drain delay: both fronts serve.
        self.assertIsNone(server.process.poll())
        self.assertGreater(len(self.list_models(channel).data), 0)
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=CALL_TIMEOUT_S)
        conn.request("GET", "/v1/models", headers={"host": "localhost"})
        self.assertEqual(conn.getresponse().status, 200)
        conn.close()
        code, _ = self.wait_exit(server, 3 + GRACE_S)
        self.assertEqual(code, 0, server.stderr_text())

    def test_a_stream_cut_at_the_deadline_ends_with_a_status(self):
        server = self.start_server(grace_s=1)
        admin = self.channel(server.admin_address)
        key = admin.unary_unary(
            "/anyai.v1.Admin/CreateKey",
            request_serializer=admin_pb2.CreateKeyRequest.SerializeToString,
            response_deserializer=admin_pb2.CreateKeyResponse.FromString)(
                admin_pb2.CreateKeyRequest(plan="free"), metadata=bearer(ADMIN_TOKEN),
                timeout=CALL_TIMEOUT_S).key
        stream = self.channel(server.grpc_address).unary_stream(
            "/anyai.v1.AnyAI/StreamChatCompletion",
            request_serializer=anyai_pb2.ChatCompletionRequest.SerializeToString,
            response_deserializer=anyai_pb2.ChatCompletionChunk.FromString)(
                anyai_pb2.ChatCompletionRequest(
                    model=HELD_MODEL, messages=[anyai_pb2.ChatMessage(role="user", content="hi")]),
                metadata=bearer(key), timeout=CALL_TIMEOUT_S + 30)
        first = next(stream)  # the upstream's chunk: the stream is under way, then held
        self.assertEqual(first.choices[0].delta.content, "held")
        server.process.send_signal(signal.SIGTERM)
        with self.assertRaises(grpc.RpcError) as cut:
            for _ in stream:
                pass
        self.assertIn(cut.exception.code(),
                      (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE), cut.exception)
        code, _ = self.wait_exit(server, 1 + GRACE_S)
        self.assertEqual(code, 0, server.stderr_text())

    def test_a_second_sigterm_ends_the_process_at_once(self):
        server = self.start_server(drain_delay_s=60)
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while self.readyz(server) != 503:  # the shutdown has begun
            self.assertLess(time.monotonic(), deadline, "/readyz did not turn 503")
            time.sleep(0.02)
        server.process.send_signal(signal.SIGTERM)
        try:
            code, took = self.wait_exit(server, SECOND_SIGNAL_BOUND_S)
        except subprocess.TimeoutExpired:
            self.fail("a second SIGTERM did not end the process")
        self.assertEqual(code, 128 + signal.SIGTERM, server.stderr_text())
        self.assertLess(took, SECOND_SIGNAL_BOUND_S)
        self.assertIn("again", server.stderr_text())


if __name__ == "__main__":
    unittest.main(argv=UNITTEST_ARGV)
