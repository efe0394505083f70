"""anyai-server end to end from Python's grpcio, as a Python client uses it: a real server
process, the *_pb2 modules the build writes, and grpc's generic API (there are no generated
Python stubs). Each test that counts against a limit uses a key of its own (made with
Admin.CreateKey), so the tests are independent of each other and of their order.

ctest runs it (tests/e2e/CMakeLists.txt, e2e_python_grpc):
  /usr/bin/python3 tests/e2e/python_grpc_test.py --server build/bin/anyai-server \
      --admin build/bin/anyai-admin --pythonpath build/python
"""

import datetime
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import anyai_server_process  # noqa: E402

OPTIONS, UNITTEST_ARGV = anyai_server_process.parse_args(__doc__, ("server", "admin"))

import grpc  # noqa: E402
from anyai.v1 import admin_pb2, anyai_pb2  # noqa: E402
from google.rpc import code_pb2, error_details_pb2, status_pb2  # noqa: E402

ADMIN_TOKEN = "e2e-python-admin-token"
CALL_TIMEOUT_S = 30  # generous: the same test runs against the ASan build
OPEN_MODEL = "llama-3-8b-chat"  # feature class "llm": free 10/min, premium 30/min


def chat_request(text="hello there", model=OPEN_MODEL, messages=None):
    if messages is None:
        messages = [anyai_pb2.ChatMessage(role="user", content=text)]
    return anyai_pb2.ChatCompletionRequest(model=model, messages=messages)


def bearer(token):
    return (("authorization", "Bearer " + token),) if token else ()


def metadata_dict(metadata):
    return {m.key: m.value for m in (metadata or ())}


def encode_health_check_request(service):
    """grpc.health.v1.HealthCheckRequest{service = 1: string}, by hand."""
    data = service.encode("utf-8")
    if not data:
        return b""
    assert len(data) < 128, "one-byte length only"
    return b"\x0a" + bytes([len(data)]) + data


def decode_health_check_status(data):
    """grpc.health.v1.HealthCheckResponse{status = 1: enum}: the status (0 when absent)."""
    status, i = 0, 0
    while i < len(data):
        tag = data[i]
        i += 1
        value, shift = 0, 0
        while True:  # every field of this message is a varint
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if tag != 0x08:
            raise ValueError(f"unexpected field tag {tag:#x} in HealthCheckResponse")
        status = value
    return status


HEALTH_SERVING = 1


class AnyAIGrpcTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.server = anyai_server_process.ServerProcess(OPTIONS.server, admin_token=ADMIN_TOKEN)
        cls.server.start()
        cls.addClassCleanup(cls.server.stop)
        cls.channel = grpc.insecure_channel(cls.server.grpc_address)
        cls.addClassCleanup(cls.channel.close)
        # The Admin service has its own listener (admin_listen), not the public port.
        cls.admin_channel = grpc.insecure_channel(cls.server.admin_address)
        cls.addClassCleanup(cls.admin_channel.close)

        def unary(service, method, request_cls, response_cls, channel=None):
            channel = channel or (cls.admin_channel if service == "Admin" else cls.channel)
            return channel.unary_unary(
                f"/anyai.v1.{service}/{method}",
                request_serializer=request_cls.SerializeToString,
                response_deserializer=response_cls.FromString)

        def stream(method, request_cls, response_cls):
            return cls.channel.unary_stream(
                f"/anyai.v1.AnyAI/{method}",
                request_serializer=request_cls.SerializeToString,
                response_deserializer=response_cls.FromString)

        cls.create_chat = unary("AnyAI", "CreateChatCompletion",
                                anyai_pb2.ChatCompletionRequest, anyai_pb2.ChatCompletion)
        cls.stream_chat = stream("StreamChatCompletion", anyai_pb2.ChatCompletionRequest,
                                 anyai_pb2.ChatCompletionChunk)
        cls.ask = stream("Ask", anyai_pb2.AskRequest, anyai_pb2.AskChunk)
        cls.list_models = unary("AnyAI", "ListModels", anyai_pb2.ListModelsRequest,
                                anyai_pb2.ListModelsResponse)
        cls.check_key = unary("AnyAI", "CheckKey", anyai_pb2.CheckKeyRequest,
                              anyai_pb2.CheckKeyResponse)
        cls.admin_create_key = unary("Admin", "CreateKey", admin_pb2.CreateKeyRequest,
                                     admin_pb2.CreateKeyResponse)
        cls.public_admin_create_key = unary("Admin", "CreateKey", admin_pb2.CreateKeyRequest,
                                            admin_pb2.CreateKeyResponse, channel=cls.channel)
        cls.health_check = cls.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw)

    # --- helpers -------------------------------------------------------------------------

    def new_key(self, plan="free"):
        response, _ = self.admin_create_key.with_call(
            admin_pb2.CreateKeyRequest(plan=plan, label=self.id()),
            metadata=bearer(ADMIN_TOKEN), timeout=CALL_TIMEOUT_S)
        self.assertTrue(response.key.startswith("sk-"), response.key)
        self.assertEqual(response.record.plan, plan)
        return response.key

    def chat(self, key, request=None):
        """(ChatCompletion, call) or raises grpc.RpcError."""
        return self.create_chat.with_call(request or chat_request(), metadata=bearer(key),
                                          timeout=CALL_TIMEOUT_S)

    def assert_rpc_error(self, code, fn, *args, **kwargs):
        with self.assertRaises(grpc.RpcError) as caught:
            fn(*args, **kwargs)
        self.assertEqual(caught.exception.code(), code, caught.exception.details())
        return caught.exception

    def rpc_status(self, error):
        """The google.rpc.Status of `grpc-status-details-bin` in an error's trailers."""
        trailers = metadata_dict(error.trailing_metadata())
        self.assertIn("grpc-status-details-bin", trailers, "no google.rpc.Status details")
        status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
        self.assertEqual(status.code, error.code().value[0])
        return status

    @staticmethod
    def unpack(status, message_cls):
        for detail in status.details:
            if detail.Is(message_cls.DESCRIPTOR):
                out = message_cls()
                detail.Unpack(out)
                return out
        return None

    def usage(self, key, feature_class="llm"):
        response = self.check_key(anyai_pb2.CheckKeyRequest(key=key), timeout=CALL_TIMEOUT_S)
        for c in response.classes:
            if c.feature_class == feature_class:
                return c
        self.fail(f"CheckKey has no class {feature_class}: {response}")

    # --- the tests -----------------------------------------------------------------------

    def test_chat_answers_with_usage_and_rate_limit_metadata(self):
        key = self.new_key("free")
        before = int(time.time())
        response, call = self.chat(key, chat_request("What is a sliding window?"))

        self.assertTrue(response.id.startswith("chatcmpl-"), response.id)
        self.assertEqual(response.object, "chat.completion")
        self.assertEqual(response.model, OPEN_MODEL)
        self.assertGreaterEqual(response.created, before - 5)
        self.assertLessEqual(response.created, int(time.time()) + 5)
        self.assertEqual(len(response.choices), 1)
        choice = response.choices[0]
        self.assertEqual(choice.index, 0)
        self.assertEqual(choice.message.role, "assistant")
        self.assertTrue(choice.message.content)
        self.assertIn(choice.finish_reason, ("stop", "length"))
        self.assertGreater(response.usage.prompt_tokens, 0)
        self.assertGreater(response.usage.completion_tokens, 0)
        self.assertEqual(response.usage.total_tokens,
                         response.usage.prompt_tokens + response.usage.completion_tokens)

        metadata = metadata_dict(call.initial_metadata())
        self.assertEqual(metadata.get("x-ratelimit-limit-requests"), "10", metadata)
        self.assertEqual(metadata.get("x-ratelimit-remaining-requests"), "9", metadata)
        self.assertRegex(metadata.get("x-ratelimit-reset-requests", ""), r"^[0-9hms.]+s$")

    def test_stream_chat_sends_role_first_then_content_then_finish_reason(self):
        key = self.new_key("free")
        call = self.stream_chat(chat_request("Tell me a long story about a lighthouse keeper."),
                                metadata=bearer(key), timeout=CALL_TIMEOUT_S)
        chunks = list(call)
        self.assertEqual(call.code(), grpc.StatusCode.OK)
        self.assertGreater(len(chunks), 2, chunks)

        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        for chunk in chunks:
            self.assertEqual(chunk.object, "chat.completion.chunk")
            self.assertEqual(chunk.id, chunks[0].id)
            self.assertEqual(chunk.model, OPEN_MODEL)
            self.assertEqual(len(chunk.choices), 1)
        for chunk in chunks[1:]:
            self.assertFalse(chunk.choices[0].delta.HasField("role"), chunk)
        for chunk in chunks[:-1]:
            self.assertFalse(chunk.choices[0].HasField("finish_reason"), chunk)
        last = chunks[-1]
        self.assertIn(last.choices[0].finish_reason, ("stop", "length"))
        self.assertFalse(last.choices[0].delta.HasField("content"), last)
        text = "".join(c.choices[0].delta.content for c in chunks)
        self.assertTrue(text.strip())
        self.assertGreater(last.usage.completion_tokens, 0)
        self.assertEqual(last.usage.total_tokens,
                         last.usage.prompt_tokens + last.usage.completion_tokens)

        metadata = metadata_dict(call.initial_metadata())
        self.assertEqual(metadata.get("x-ratelimit-limit-requests"), "10", metadata)
        self.assertEqual(self.usage(key).windows[0].used, 1, "a stream counts once")

    def test_ask_streams_message_chunks(self):
        call = self.ask(anyai_pb2.AskRequest(prompt="Why is the sky blue?"),
                        timeout=CALL_TIMEOUT_S)
        chunks = list(call)
        self.assertEqual(call.code(), grpc.StatusCode.OK)
        self.assertGreaterEqual(len(chunks), 1)
        self.assertTrue("".join(c.message for c in chunks).strip(), chunks)
        metadata = metadata_dict(call.initial_metadata())
        self.assertEqual(metadata.get("x-ratelimit-limit-requests"), "120", metadata)

    def test_check_key_reports_plan_masked_key_and_usage(self):
        key = self.new_key("free")
        self.chat(key)

        for how in ("request", "metadata"):
            with self.subTest(key_in=how):
                if how == "request":
                    response = self.check_key(anyai_pb2.CheckKeyRequest(key=key),
                                              timeout=CALL_TIMEOUT_S)
                else:
                    response = self.check_key(anyai_pb2.CheckKeyRequest(),
                                              metadata=bearer(key), timeout=CALL_TIMEOUT_S)
                self.assertEqual(response.plan, "free")
                self.assertIn("\u2026", response.masked_key)
                self.assertNotIn(key[12:-6], response.masked_key)
                self.assertGreater(response.created, 0)
                classes = {c.feature_class: c for c in response.classes}
                for name in ("llm", "closed_llm", "image_generation", "globalask", "imagine",
                             "vision"):
                    self.assertIn(name, classes)
                llm = classes["llm"]
                self.assertEqual([w.window.seconds for w in llm.windows], [60, 86400])
                self.assertEqual([w.limit for w in llm.windows], [10, 2000])
                self.assertEqual([w.used for w in llm.windows], [1, 1])
                self.assertEqual([w.remaining for w in llm.windows], [9, 1999])
                self.assertGreater(llm.windows[0].reset.ToNanoseconds(), 0)

        anonymous = self.check_key(anyai_pb2.CheckKeyRequest(), timeout=CALL_TIMEOUT_S)
        self.assertEqual(anonymous.plan, "free")
        self.assertEqual(anonymous.masked_key, "")

    def test_list_models_returns_the_catalogue(self):
        response = self.list_models(anyai_pb2.ListModelsRequest(), timeout=CALL_TIMEOUT_S)
        self.assertEqual(response.object, "list")
        self.assertEqual(len(response.data), 103)
        ids = [m.id for m in response.data]
        self.assertEqual(len(set(ids)), len(ids), "model ids are unique")
        self.assertIn("gpt-4o", ids)
        self.assertIn(OPEN_MODEL, ids)
        for model in response.data:
            self.assertEqual(model.object, "model")
            self.assertTrue(model.owned_by, model)

    def test_admin_created_premium_key_gets_premium_limits(self):
        key = self.new_key("premium")
        _, call = self.chat(key)
        metadata = metadata_dict(call.initial_metadata())
        self.assertEqual(metadata.get("x-ratelimit-limit-requests"), "30", metadata)
        self.assertEqual(metadata.get("x-ratelimit-remaining-requests"), "29", metadata)
        self.assertEqual(self.check_key(anyai_pb2.CheckKeyRequest(key=key),
                                        timeout=CALL_TIMEOUT_S).plan, "premium")

    def test_admin_refuses_a_missing_or_wrong_token(self):
        request = admin_pb2.CreateKeyRequest(plan="free")
        self.assert_rpc_error(grpc.StatusCode.UNAUTHENTICATED, self.admin_create_key, request,
                              timeout=CALL_TIMEOUT_S)
        self.assert_rpc_error(grpc.StatusCode.UNAUTHENTICATED, self.admin_create_key, request,
                              metadata=bearer("not-the-admin-token"), timeout=CALL_TIMEOUT_S)
        api_key = self.new_key("premium")
        self.assert_rpc_error(grpc.StatusCode.UNAUTHENTICATED, self.admin_create_key, request,
                              metadata=bearer(api_key), timeout=CALL_TIMEOUT_S)

    def test_admin_is_not_served_on_the_public_port(self):
        self.assert_rpc_error(grpc.StatusCode.UNIMPLEMENTED, self.public_admin_create_key,
                              admin_pb2.CreateKeyRequest(plan="free"),
                              metadata=bearer(ADMIN_TOKEN), timeout=CALL_TIMEOUT_S)

    def test_eleventh_free_chat_in_a_minute_is_rate_limited_with_details(self):
        key = self.new_key("free")
        for i in range(10):
            _, call = self.chat(key)
            remaining = metadata_dict(call.initial_metadata())["x-ratelimit-remaining-requests"]
            self.assertEqual(remaining, str(9 - i))

        error = self.assert_rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, self.chat, key)
        self.assertIn("llm", error.details())
        status = self.rpc_status(error)
        self.assertEqual(status.code, code_pb2.RESOURCE_EXHAUSTED)

        quota = self.unpack(status, error_details_pb2.QuotaFailure)
        self.assertIsNotNone(quota, f"no QuotaFailure in {status}")
        self.assertGreaterEqual(len(quota.violations), 1)
        self.assertIn("llm", quota.violations[0].subject + quota.violations[0].description)

        retry = self.unpack(status, error_details_pb2.RetryInfo)
        self.assertIsNotNone(retry, f"no RetryInfo in {status}")
        delay = retry.retry_delay.ToTimedelta()
        self.assertGreater(delay, datetime.timedelta(0))
        self.assertLessEqual(delay, datetime.timedelta(seconds=61))

        info = self.unpack(status, error_details_pb2.ErrorInfo)
        self.assertIsNotNone(info, f"no ErrorInfo in {status}")
        self.assertEqual(info.reason, "RATE_LIMIT_EXCEEDED")
        self.assertEqual(info.domain, "anyai.v1")

        trailers = metadata_dict(error.trailing_metadata())
        self.assertEqual(trailers.get("x-ratelimit-limit-requests"), "10", trailers)
        self.assertEqual(trailers.get("x-ratelimit-remaining-requests"), "0", trailers)
        self.assertIn("x-ratelimit-reset-requests", trailers)

        self.assertEqual(self.usage(key).windows[0].used, 10, "a refusal is not counted")

    def test_system_message_not_first_is_invalid_argument_with_bad_request(self):
        key = self.new_key("free")
        request = chat_request(messages=[
            anyai_pb2.ChatMessage(role="user", content="hi"),
            anyai_pb2.ChatMessage(role="system", content="be terse"),
        ])
        error = self.assert_rpc_error(grpc.StatusCode.INVALID_ARGUMENT, self.chat, key, request)
        status = self.rpc_status(error)
        bad_request = self.unpack(status, error_details_pb2.BadRequest)
        self.assertIsNotNone(bad_request, f"no BadRequest in {status}")
        fields = [v.field for v in bad_request.field_violations]
        self.assertTrue(any(f.startswith("messages[1]") for f in fields), fields)
        self.assertEqual(self.usage(key).windows[0].used, 0, "an invalid request is not counted")

    def test_unknown_model_is_not_found(self):
        key = self.new_key("free")
        self.assert_rpc_error(grpc.StatusCode.NOT_FOUND, self.chat, key,
                              chat_request(model="no-such-model"))
        self.assertEqual(self.usage(key).windows[0].used, 0)

    def test_bogus_key_is_unauthenticated(self):
        for bogus in ("sk-anyai-" + "0" * 64, "not-a-key"):
            with self.subTest(key=bogus):
                self.assert_rpc_error(grpc.StatusCode.UNAUTHENTICATED, self.chat, bogus)
                self.assert_rpc_error(grpc.StatusCode.UNAUTHENTICATED, self.check_key,
                                      anyai_pb2.CheckKeyRequest(), metadata=bearer(bogus),
                                      timeout=CALL_TIMEOUT_S)

    def test_grpc_health_check_answers_serving(self):
        response = self.health_check(encode_health_check_request(""), timeout=CALL_TIMEOUT_S)
        self.assertEqual(decode_health_check_status(response), HEALTH_SERVING, response)


if __name__ == "__main__":
    unittest.main(argv=UNITTEST_ARGV, verbosity=2)
