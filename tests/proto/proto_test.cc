// The public protos: googleapis wire compatibility of google.rpc, the seed's JSON bodies
// parsing straight into the anyai.v1 messages, presence of optional parameters, the services'
// shape and the config schema's two file formats.
#include <string>

#include "anyai/v1/admin.grpc.pb.h"
#include "anyai/v1/anyai.grpc.pb.h"
#include "anyai/v1/config.pb.h"
#include "google/protobuf/any.pb.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "google/rpc/code.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/support/error_details.h"
#include "gtest/gtest.h"

namespace anyai::v1 {
namespace {

using ::google::protobuf::util::JsonParseOptions;
using ::google::protobuf::util::JsonStringToMessage;

// Parses like the HTTP front should: an unknown field is an error, not silently dropped.
template <typename M>
M ParseJsonStrictly(const std::string& json) {
  M message;
  JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = JsonStringToMessage(json, &message, options);
  EXPECT_TRUE(status.ok()) << status.ToString() << " parsing " << json;
  return message;
}

std::string Bytes(std::initializer_list<int> bytes) {
  std::string out;
  for (int b : bytes) out.push_back(static_cast<char>(b));
  return out;
}

// Golden bytes written by hand from googleapis' field numbers, so that a renumbering here
// (which would break every client that has googleapis' own copy) fails the test.
TEST(GoogleRpcTest, RetryInfoHasGoogleapisWireFormat) {
  google::rpc::RetryInfo info;
  info.mutable_retry_delay()->set_seconds(5);
  EXPECT_EQ(info.SerializeAsString(), Bytes({0x0a, 0x02, 0x08, 0x05}));
}

TEST(GoogleRpcTest, ErrorInfoHasGoogleapisWireFormat) {
  google::rpc::ErrorInfo info;
  info.set_reason("R");
  info.set_domain("D");
  (*info.mutable_metadata())["k"] = "v";
  EXPECT_EQ(info.SerializeAsString(), Bytes({0x0a, 0x01, 'R', 0x12, 0x01, 'D', 0x1a, 0x06, 0x0a,
                                             0x01, 'k', 0x12, 0x01, 'v'}));
}

TEST(GoogleRpcTest, QuotaFailureHasGoogleapisWireFormat) {
  google::rpc::QuotaFailure failure;
  auto* violation = failure.add_violations();
  violation->set_subject("s");
  violation->set_description("d");
  violation->set_quota_value(3);
  EXPECT_EQ(failure.SerializeAsString(),
            Bytes({0x0a, 0x08, 0x0a, 0x01, 's', 0x12, 0x01, 'd', 0x38, 0x03}));
}

TEST(GoogleRpcTest, BadRequestHasGoogleapisWireFormat) {
  google::rpc::BadRequest bad;
  auto* violation = bad.add_field_violations();
  violation->set_field("f");
  violation->set_description("d");
  EXPECT_EQ(bad.SerializeAsString(), Bytes({0x0a, 0x06, 0x0a, 0x01, 'f', 0x12, 0x01, 'd'}));
}

TEST(GoogleRpcTest, StatusHasGoogleapisWireFormat) {
  google::rpc::Status status;
  status.set_code(google::rpc::RESOURCE_EXHAUSTED);
  status.set_message("m");
  status.add_details()->set_type_url("t");
  EXPECT_EQ(status.SerializeAsString(),
            Bytes({0x08, 0x08, 0x12, 0x01, 'm', 0x1a, 0x03, 0x0a, 0x01, 't'}));
}

TEST(GoogleRpcTest, RateLimitDetailsTravelThroughAGrpcStatus) {
  google::rpc::Status details;
  details.set_code(google::rpc::RESOURCE_EXHAUSTED);
  details.set_message("llm: 10 requests per 1m exceeded");
  google::rpc::QuotaFailure quota;
  quota.add_violations()->set_subject("clientip:203.0.113.7");
  details.add_details()->PackFrom(quota);
  google::rpc::RetryInfo retry;
  retry.mutable_retry_delay()->set_seconds(6);
  details.add_details()->PackFrom(retry);
  google::rpc::ErrorInfo info;
  info.set_reason("RATE_LIMIT_EXCEEDED");
  details.add_details()->PackFrom(info);

  grpc::Status status;
  ASSERT_TRUE(grpc::SetErrorDetails(details, &status).ok());
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  google::rpc::Status received;
  ASSERT_TRUE(grpc::ExtractErrorDetails(status, &received).ok());
  ASSERT_EQ(received.details_size(), 3);
  EXPECT_EQ(received.details(0).type_url(), "type.googleapis.com/google.rpc.QuotaFailure");
  EXPECT_EQ(received.details(1).type_url(), "type.googleapis.com/google.rpc.RetryInfo");
  EXPECT_EQ(received.details(2).type_url(), "type.googleapis.com/google.rpc.ErrorInfo");
  google::rpc::RetryInfo received_retry;
  ASSERT_TRUE(received.details(1).UnpackTo(&received_retry));
  EXPECT_EQ(received_retry.retry_delay().seconds(), 6);
}

TEST(AnyAIMessagesTest, ChatRequestParsesTheSeedsJsonBody) {
  const auto request = ParseJsonStrictly<ChatCompletionRequest>(R"json({
    "model": "claude-3-opus",
    "messages": [
      {"role": "system", "content": "System prompt (only the first message, once)"},
      {"role": "user", "content": "Message content"},
      {"role": "assistant", "content": "Assistant response"}
    ],
    "max_tokens": 2048,
    "stream": false,
    "temperature": 0.7,
    "top_p": 0.5,
    "top_k": 0
  })json");
  EXPECT_EQ(request.model(), "claude-3-opus");
  ASSERT_EQ(request.messages_size(), 3);
  EXPECT_EQ(request.messages(0).role(), "system");
  EXPECT_EQ(request.messages(2).content(), "Assistant response");
  EXPECT_EQ(request.max_tokens(), 2048);
  EXPECT_TRUE(request.has_stream());
  EXPECT_FALSE(request.stream());
  EXPECT_DOUBLE_EQ(request.temperature(), 0.7);
  EXPECT_DOUBLE_EQ(request.top_p(), 0.5);
  EXPECT_TRUE(request.has_top_k());
  EXPECT_EQ(request.top_k(), 0);
}

TEST(AnyAIMessagesTest, AbsentParametersAreDistinguishableFromZero) {
  const auto absent = ParseJsonStrictly<ChatCompletionRequest>(R"({"model": "gpt-4o"})");
  EXPECT_FALSE(absent.has_max_tokens());
  EXPECT_FALSE(absent.has_temperature());
  EXPECT_FALSE(absent.has_top_p());
  EXPECT_FALSE(absent.has_top_k());

  const auto zero = ParseJsonStrictly<ChatCompletionRequest>(
      R"({"model": "gpt-4o", "max_tokens": 0, "temperature": 0})");
  EXPECT_TRUE(zero.has_max_tokens());
  EXPECT_TRUE(zero.has_temperature());

  const auto pluto = ParseJsonStrictly<ImagineRequest>(R"({"prompt": "a", "model": "pluto"})");
  EXPECT_FALSE(pluto.has_width());
  EXPECT_FALSE(pluto.has_height());
  EXPECT_FALSE(pluto.has_steps());
  EXPECT_FALSE(pluto.has_seed());
  const auto seeded = ParseJsonStrictly<ImagineRequest>(R"({"prompt": "a", "seed": 0})");
  EXPECT_TRUE(seeded.has_seed());
}

TEST(AnyAIMessagesTest, ImagesRequestParsesTheSeedsJsonBody) {
  const auto request = ParseJsonStrictly<GenerateImagesRequest>(R"json({
    "prompt": "A futuristic cityscape",
    "model": "dall-e-3",
    "n": 1,
    "quality": "hd",
    "response_format": "url",
    "size": "1024x1024"
  })json");
  EXPECT_EQ(request.prompt(), "A futuristic cityscape");
  EXPECT_TRUE(request.has_n());
  EXPECT_EQ(request.n(), 1);
  EXPECT_EQ(request.quality(), "hd");
  EXPECT_EQ(request.response_format(), "url");
  EXPECT_EQ(request.size(), "1024x1024");
}

TEST(AnyAIMessagesTest, UnknownJsonFieldIsRefused) {
  ChatCompletionRequest request;
  JsonParseOptions options;
  options.ignore_unknown_fields = false;
  EXPECT_FALSE(
      JsonStringToMessage(R"({"model": "gpt-4o", "tempreature": 1})", &request, options).ok());
}

TEST(AnyAIMessagesTest, ImageCarriesUrlOrBase64) {
  Image image;
  image.set_url("https://example.com/a.png");
  image.set_b64_json("iVBORw0KGgo=");
  EXPECT_EQ(image.image_case(), Image::kB64Json);
  EXPECT_TRUE(image.url().empty());
}

TEST(ServicesTest, AnyAIHasTheMethodsOfTheSpec) {
  EXPECT_STREQ(AnyAI::service_full_name(), "anyai.v1.AnyAI");
  const auto* service = ChatCompletion::descriptor()->file()->FindServiceByName("AnyAI");
  ASSERT_NE(service, nullptr);
  struct Expected {
    const char* name;
    bool server_streaming;
  };
  for (const Expected& e :
       {Expected{"CreateChatCompletion", false}, Expected{"StreamChatCompletion", true},
        Expected{"ListModels", false}, Expected{"GenerateImages", false},
        Expected{"Imagine", false}, Expected{"Ask", true}, Expected{"DescribeImage", false},
        Expected{"CheckKey", false}}) {
    const auto* method = service->FindMethodByName(e.name);
    ASSERT_NE(method, nullptr) << e.name;
    EXPECT_FALSE(method->client_streaming()) << e.name;
    EXPECT_EQ(method->server_streaming(), e.server_streaming) << e.name;
  }
  EXPECT_EQ(service->method_count(), 8);
}

TEST(ServicesTest, AdminHasTheMethodsOfTheSpec) {
  EXPECT_STREQ(Admin::service_full_name(), "anyai.v1.Admin");
  const auto* service = KeyRecord::descriptor()->file()->FindServiceByName("Admin");
  ASSERT_NE(service, nullptr);
  for (const char* name :
       {"CreateKey", "GetKey", "ListKeys", "UpdateKey", "RevokeKey", "GetUsage"}) {
    const auto* method = service->FindMethodByName(name);
    ASSERT_NE(method, nullptr) << name;
    EXPECT_FALSE(method->client_streaming() || method->server_streaming()) << name;
  }
  EXPECT_EQ(service->method_count(), 6);
}

TEST(AdminMessagesTest, GetUsageNamesExactlyOneTenant) {
  GetUsageRequest request;
  request.set_key("sk-secret");
  request.set_ip("203.0.113.7");
  EXPECT_EQ(request.tenant_case(), GetUsageRequest::kIp);
  EXPECT_TRUE(request.key().empty());
}

TEST(AdminMessagesTest, UpdateKeyTellsAbsentFromCleared) {
  UpdateKeyRequest request;
  request.set_key_id("0123456789abcdef");
  EXPECT_FALSE(request.has_plan());
  EXPECT_FALSE(request.has_label());
  request.set_label("");
  EXPECT_TRUE(request.has_label());
}

constexpr char kConfigText[] = R"pb(
  grpc_listen: "127.0.0.1:0"
  durability: DURABILITY_FSYNC
  storage_failure_policy: STORAGE_FAILURE_POLICY_FAIL_OPEN
  plans {
    name: "free"
    max_message_chars: 1000
    classes {
      feature_class: "llm"
      windows {
        length { seconds: 2 }
        max_requests: 3
      }
      windows {
        length { seconds: 4 }
        max_requests: 5
      }
    }
  }
  providers {
    name: "up"
    type: PROVIDER_TYPE_OPENAI
    base_url: "http://127.0.0.1:9/v1"
    timeout { seconds: 30 }
    model_map { key: "gpt-4o" value: "gpt-4o-2024-05-13" }
  }
  trusted_proxies: "10.0.0.0/8"
  idle_tenant_timeout { seconds: 600 }
)pb";

TEST(ConfigTest, ReadsAsTextproto) {
  ServerConfig config;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(kConfigText, &config));
  EXPECT_EQ(config.durability(), DURABILITY_FSYNC);
  EXPECT_EQ(config.storage_failure_policy(), STORAGE_FAILURE_POLICY_FAIL_OPEN);
  ASSERT_EQ(config.plans_size(), 1);
  ASSERT_EQ(config.plans(0).classes(0).windows_size(), 2);
  EXPECT_EQ(config.plans(0).classes(0).windows(1).length().seconds(), 4);
  EXPECT_EQ(config.providers(0).model_map().at("gpt-4o"), "gpt-4o-2024-05-13");
}

TEST(ConfigTest, ReadsAsJsonWithDurationsAsStrings) {
  const auto config = ParseJsonStrictly<ServerConfig>(R"json({
    "http_listen": "0.0.0.0:0",
    "durability": "DURABILITY_PROCESS_CRASH",
    "plans": [{"name": "premium", "max_message_chars": 5000, "classes": [
      {"feature_class": "imagine", "windows": [{"length": "86400s", "max_requests": 20}]}]}],
    "idle_tenant_timeout": "1.5s",
    "max_body_bytes": 1048576
  })json");
  EXPECT_EQ(config.durability(), DURABILITY_PROCESS_CRASH);
  EXPECT_EQ(config.plans(0).classes(0).windows(0).length().seconds(), 86400);
  EXPECT_EQ(config.idle_tenant_timeout().nanos(), 500000000);
  EXPECT_EQ(config.max_body_bytes(), 1048576);
}

TEST(ConfigTest, UnsetEnumsReadAsUnspecified) {
  ServerConfig config;
  EXPECT_EQ(config.durability(), DURABILITY_UNSPECIFIED);
  EXPECT_EQ(config.storage_failure_policy(), STORAGE_FAILURE_POLICY_UNSPECIFIED);
  EXPECT_EQ(ProviderConfig().type(), PROVIDER_TYPE_UNSPECIFIED);
}

}  // namespace
}  // namespace anyai::v1
