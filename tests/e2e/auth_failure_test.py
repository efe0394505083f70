"""Failed authentication limited per client address, and protobuf's log kept quiet, end to end
(issue 12, SPEC §3): a real anyai-server on loopback.

  - 60 requests with a wrong API key from one address (HTTP and gRPC count together), then
    every request carrying a key from it, a valid one included, is refused: HTTP 429 with
    Retry-After, gRPC RESOURCE_EXHAUSTED with google.rpc.RetryInfo; anonymous requests are
    still served.
  - 300 gRPC requests whose strings are not UTF-8 are all refused, and protobuf's complaint
    about them reaches stderr a bounded number of times (once per 10 s), not 300.

  /usr/bin/python3 tests/e2e/auth_failure_test.py --server build/bin/anyai-server \\
      --admin build/bin/anyai-admin --pythonpath build/python
"""

import http.client
import json
import time
import unittest

import anyai_server_process

OPTIONS, UNITTEST_ARGV = anyai_server_process.parse_args(__doc__, ("server", "admin"))

import grpc  # noqa: E402

from anyai.v1 import admin_pb2, anyai_pb2  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402

ADMIN_TOKEN = "e2e-auth-failure-admin-token"
CALL_TIMEOUT_S = 20.0
MAX_FAILED = 60


def bearer(token):
    return (("authorization", f"Bearer {token}"),)


class AuthFailureTest(unittest.TestCase):
    def setUp(self):
        self.server = anyai_server_process.ServerProcess(OPTIONS.server, admin_token=ADMIN_TOKEN)
        self.server.start()
        self.channels = []

    def tearDown(self):
        for channel in self.channels:
            channel.close()
        self.server.stop()

    def channel(self, address):
        channel = grpc.insecure_channel(address)
        self.channels.append(channel)
        return channel

    def create_key(self):
        return self.channel(self.server.admin_address).unary_unary(
            "/anyai.v1.Admin/CreateKey",
            request_serializer=admin_pb2.CreateKeyRequest.SerializeToString,
            response_deserializer=admin_pb2.CreateKeyResponse.FromString)(
                admin_pb2.CreateKeyRequest(plan="premium"), metadata=bearer(ADMIN_TOKEN),
                timeout=CALL_TIMEOUT_S).key

    def http_models(self, key=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.http_port,
                                          timeout=CALL_TIMEOUT_S)
        headers = {"host": "localhost"}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        conn.request("GET", "/v1/models", headers=headers)
        response = conn.getresponse()
        body = response.read()
        conn.close()
        return response.status, dict((k.lower(), v) for k, v in response.getheaders()), body

    def grpc_list_models(self, key):
        return self.channel(self.server.grpc_address).unary_unary(
            "/anyai.v1.AnyAI/ListModels",
            request_serializer=anyai_pb2.ListModelsRequest.SerializeToString,
            response_deserializer=anyai_pb2.ListModelsResponse.FromString)(
                anyai_pb2.ListModelsRequest(), metadata=bearer(key), timeout=CALL_TIMEOUT_S)

    def test_wrong_keys_from_one_address_are_limited_and_then_every_key_is_refused(self):
        valid = self.create_key()
        self.assertEqual(self.http_models(valid)[0], 200)
        # Half over HTTP, half over gRPC: one client address.
        for i in range(MAX_FAILED // 2):
            status, _, _ = self.http_models("sk-anyai-wrong")
            self.assertEqual(status, 401, f"HTTP failure {i + 1}")
        for i in range(MAX_FAILED // 2):
            with self.assertRaises(grpc.RpcError) as raised:
                self.grpc_list_models("sk-anyai-wrong")
            self.assertEqual(raised.exception.code(), grpc.StatusCode.UNAUTHENTICATED,
                             f"gRPC failure {i + 1}")

        status, headers, body = self.http_models(valid)
        self.assertEqual(status, 429, body)
        self.assertIn("retry-after", headers)
        self.assertGreaterEqual(int(headers["retry-after"]), 1)
        self.assertLessEqual(int(headers["retry-after"]), 60)
        message = json.loads(body)["error"]["message"]
        self.assertIn("too many failed authentications from this address", message)

        with self.assertRaises(grpc.RpcError) as raised:
            self.grpc_list_models(valid)
        self.assertEqual(raised.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        trailers = dict(raised.exception.trailing_metadata())
        rpc_status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
        retry = [d for d in rpc_status.details if d.type_url.endswith("google.rpc.RetryInfo")]
        self.assertEqual(len(retry), 1)
        info = error_details_pb2.RetryInfo.FromString(retry[0].value)
        self.assertGreater(info.retry_delay.seconds + info.retry_delay.nanos, 0)

        # Anonymous requests from the same address are not affected.
        self.assertEqual(self.http_models()[0], 200)

    def test_invalid_utf8_requests_do_not_flood_the_log(self):
        # ChatCompletionRequest{model: "\xc3\x28"}: field 1, a proto3 string that is not UTF-8.
        bad = b"\x0a\x02\xc3\x28"
        call = self.channel(self.server.grpc_address).unary_unary(
            "/anyai.v1.AnyAI/CreateChatCompletion",
            request_serializer=lambda raw: raw,
            response_deserializer=anyai_pb2.ChatCompletion.FromString)
        started = time.monotonic()
        for _ in range(300):
            with self.assertRaises(grpc.RpcError):
                call(bad, timeout=CALL_TIMEOUT_S)
        intervals = int((time.monotonic() - started) // 10)
        lines = [line for line in self.server.stderr_text(limit=10_000_000).splitlines()
                 if "invalid UTF-8" in line]
        self.assertGreaterEqual(len(lines), 1, "protobuf did not complain at all")
        self.assertLessEqual(len(lines), 1 + intervals, "\n".join(lines[:5]))


if __name__ == "__main__":
    unittest.main(argv=UNITTEST_ARGV)
