"""The protos from Python, as Python clients use them: Debian's python3-protobuf and
python3-grpcio with the *_pb2.py modules that the build writes to build/python (no grpc_tools,
no generated stubs: calls go through grpc's generic API).

Run from the source tree (ctest does this, see CMakeLists.txt):
  PYTHONPATH=build/python /usr/bin/python3 tests/proto/proto_python_test.py
"""

import os
import subprocess
import tempfile
import unittest
from concurrent import futures

import grpc
from google.protobuf import descriptor_pb2, json_format

from anyai.v1 import admin_pb2, anyai_pb2, config_pb2  # noqa: F401 (config: import check)
from google.rpc import code_pb2, error_details_pb2, status_pb2

PROTO_DIR = os.environ.get(
    "ANYAI_PROTO_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "proto"))
PROTOC = os.environ.get("ANYAI_PROTOC", "protoc")
PROTOS = [
    "google/rpc/code.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
    "anyai/v1/anyai.proto",
    "anyai/v1/admin.proto",
    "anyai/v1/config.proto",
]


def rate_limited_status():
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED,
                               message="llm: 10 requests per 1m exceeded")
    status.details.add().Pack(error_details_pb2.QuotaFailure(violations=[
        error_details_pb2.QuotaFailure.Violation(subject="clientip:203.0.113.7",
                                                 description="llm: 10 per 1m")]))
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromMilliseconds(1500)
    status.details.add().Pack(retry)
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason="RATE_LIMIT_EXCEEDED",
                                                          domain="anyai.v1"))
    return status


class GenericHandler(grpc.GenericRpcHandler):
    """A stand-in AnyAI server: answers CreateChatCompletion, rate-limits CheckKey."""

    def service(self, handler_call_details):
        if handler_call_details.method == "/anyai.v1.AnyAI/CreateChatCompletion":
            def chat(request, context):
                return anyai_pb2.ChatCompletion(
                    id="chatcmpl-1", object="chat.completion", model=request.model,
                    choices=[anyai_pb2.ChatCompletionChoice(
                        index=0, finish_reason="stop",
                        message=anyai_pb2.ChatMessage(role="assistant",
                                                      content=request.messages[0].content))])
            return grpc.unary_unary_rpc_method_handler(
                chat, request_deserializer=anyai_pb2.ChatCompletionRequest.FromString,
                response_serializer=anyai_pb2.ChatCompletion.SerializeToString)
        if handler_call_details.method == "/anyai.v1.AnyAI/CheckKey":
            def check(request, context):
                status = rate_limited_status()
                context.abort_with_status(_RichStatus(status))
            return grpc.unary_unary_rpc_method_handler(
                check, request_deserializer=anyai_pb2.CheckKeyRequest.FromString,
                response_serializer=anyai_pb2.CheckKeyResponse.SerializeToString)
        return None


class _RichStatus(grpc.Status):
    def __init__(self, status):
        self.code = grpc.StatusCode.RESOURCE_EXHAUSTED
        self.details = status.message
        self.trailing_metadata = (("grpc-status-details-bin", status.SerializeToString()),)


class ProtoPythonTest(unittest.TestCase):

    def test_rate_limit_details_round_trip(self):
        received = status_pb2.Status.FromString(rate_limited_status().SerializeToString())
        self.assertEqual([d.type_url for d in received.details], [
            "type.googleapis.com/google.rpc.QuotaFailure",
            "type.googleapis.com/google.rpc.RetryInfo",
            "type.googleapis.com/google.rpc.ErrorInfo",
        ])
        retry = error_details_pb2.RetryInfo()
        self.assertTrue(received.details[1].Unpack(retry))
        self.assertEqual(retry.retry_delay.ToMilliseconds(), 1500)

    def test_seed_chat_body_parses_strictly(self):
        request = json_format.Parse(
            '{"model": "claude-3-opus", "messages": [{"role": "user", "content": "hi"}],'
            ' "max_tokens": 2048, "stream": false, "temperature": 0.7, "top_p": 0.5,'
            ' "top_k": 0}', anyai_pb2.ChatCompletionRequest())
        self.assertTrue(request.HasField("top_k"))
        self.assertFalse(anyai_pb2.ChatCompletionRequest().HasField("max_tokens"))
        with self.assertRaises(json_format.ParseError):
            json_format.Parse('{"modle": "x"}', anyai_pb2.ChatCompletionRequest())

    def test_generic_calls_and_status_details_over_grpc(self):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        server.add_generic_rpc_handlers((GenericHandler(),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                chat = channel.unary_unary(
                    "/anyai.v1.AnyAI/CreateChatCompletion",
                    request_serializer=anyai_pb2.ChatCompletionRequest.SerializeToString,
                    response_deserializer=anyai_pb2.ChatCompletion.FromString)
                reply = chat(anyai_pb2.ChatCompletionRequest(
                    model="gpt-4o", messages=[anyai_pb2.ChatMessage(role="user", content="x")]),
                    timeout=10)
                self.assertEqual(reply.choices[0].message.content, "x")

                check = channel.unary_unary(
                    "/anyai.v1.AnyAI/CheckKey",
                    request_serializer=anyai_pb2.CheckKeyRequest.SerializeToString,
                    response_deserializer=anyai_pb2.CheckKeyResponse.FromString)
                with self.assertRaises(grpc.RpcError) as caught:
                    check(anyai_pb2.CheckKeyRequest(), timeout=10)
                error = caught.exception
                self.assertEqual(error.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
                details = dict(error.trailing_metadata())["grpc-status-details-bin"]
                status = status_pb2.Status.FromString(details)
                info = error_details_pb2.ErrorInfo()
                self.assertTrue(status.details[2].Unpack(info))
                self.assertEqual(info.reason, "RATE_LIMIT_EXCEEDED")
        finally:
            server.stop(None)

    def test_every_anyai_element_is_documented(self):
        """STYLE.md: every message, field, enum value, service and method has a comment."""
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "protos.desc")
            subprocess.run([PROTOC, "-I", PROTO_DIR, "--include_source_info",
                            "--descriptor_set_out=" + out] + PROTOS, check=True)
            with open(out, "rb") as f:
                files = descriptor_pb2.FileDescriptorSet.FromString(f.read()).file
        undocumented = []
        for file in files:
            if not file.name.startswith("anyai/"):
                continue
            commented = {tuple(loc.path) for loc in file.source_code_info.location
                         if loc.leading_comments.strip()}

            def check(path, name):
                if tuple(path) not in commented:
                    undocumented.append(f"{file.name}: {name}")

            def walk_message(message, path, prefix):
                name = prefix + message.name
                check(path, name)
                for i, field in enumerate(message.field):
                    check(path + [2, i], f"{name}.{field.name}")
                for i, nested in enumerate(message.nested_type):
                    if not nested.options.map_entry:
                        walk_message(nested, path + [3, i], name + ".")
                for i, enum in enumerate(message.enum_type):
                    walk_enum(enum, path + [4, i], name + ".")

            def walk_enum(enum, path, prefix):
                check(path, prefix + enum.name)
                self.assertTrue(enum.value[0].name.endswith("_UNSPECIFIED"), enum.name)
                self.assertEqual(enum.value[0].number, 0)
                for i, value in enumerate(enum.value):
                    check(path + [2, i], f"{prefix}{enum.name}.{value.name}")

            for i, message in enumerate(file.message_type):
                walk_message(message, [4, i], "")
            for i, enum in enumerate(file.enum_type):
                walk_enum(enum, [5, i], "")
            for i, service in enumerate(file.service):
                check([6, i], service.name)
                for j, method in enumerate(service.method):
                    check([6, i, 2, j], f"{service.name}.{method.name}")
        self.assertEqual(undocumented, [])


if __name__ == "__main__":
    unittest.main()
