// The gRPC front end to end, in-process: a real Server on a loopback port with a temp RocksDB,
// real channels and stubs, and a stepped clock instead of sleeps. Every plan-table row is
// enforced, every bad input of SPEC §10 is refused with nothing counted, every RPC answers.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "anyai/v1/admin.grpc.pb.h"
#include "anyai/v1/anyai.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/app/server.h"
#include "server/config/config.h"
#include "tests/testing/temp_dir.h"

namespace anyai::server {
namespace {

using ::testing::HasSubstr;

constexpr char kAdminToken[] = "test-admin-token";

class GrpcServerTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(); }

  // Override to change the config before the start.
  virtual void Configure(v1::ServerConfig& /*config*/) {}

  void Start(const std::string& grpc_listen = "127.0.0.1:0") {
    v1::ServerConfig config = DefaultConfig();
    config.set_grpc_listen(grpc_listen);
    config.set_http_listen("127.0.0.1:0");
    config.set_admin_listen("127.0.0.1:0");
    config.set_data_dir(dir_.Sub("data"));
    config.set_admin_token(kAdminToken);
    Configure(config);
    absl::StatusOr<std::unique_ptr<Server>> server =
        Server::Start(config, {.clock = [this] { return absl::FromUnixMicros(now_us_.load()); }});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_->grpc_address(), grpc::InsecureChannelCredentials());
    anyai_ = v1::AnyAI::NewStub(channel_);
    // The Admin service has a listener of its own (admin_listen).
    admin_channel_ =
        grpc::CreateChannel(server_->admin_address(), grpc::InsecureChannelCredentials());
    admin_ = v1::Admin::NewStub(admin_channel_);
  }

  void Restart() {
    anyai_.reset();
    admin_.reset();
    channel_.reset();
    admin_channel_.reset();
    server_.reset();
    Start();
  }

  void Advance(absl::Duration d) { now_us_ += absl::ToInt64Microseconds(d); }

  std::unique_ptr<grpc::ClientContext> Context(const std::string& key = "") {
    auto c = std::make_unique<grpc::ClientContext>();
    if (!key.empty()) c->AddMetadata("authorization", "Bearer " + key);
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return c;
  }

  std::string CreateKey(const std::string& plan) {
    auto c = Context(kAdminToken);
    v1::CreateKeyRequest req;
    req.set_plan(plan);
    req.set_label("test");
    v1::CreateKeyResponse resp;
    grpc::Status s = admin_->CreateKey(c.get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.key();
  }

  static v1::ChatCompletionRequest Chat(const std::string& model, const std::string& text = "hi") {
    v1::ChatCompletionRequest req;
    req.set_model(model);
    auto* m = req.add_messages();
    m->set_role("user");
    m->set_content(text);
    return req;
  }

  grpc::Status CallChat(const v1::ChatCompletionRequest& req, const std::string& key = "",
                        v1::ChatCompletion* out = nullptr) {
    v1::ChatCompletion resp;
    auto c = Context(key);
    return anyai_->CreateChatCompletion(c.get(), req, out != nullptr ? out : &resp);
  }

  // `used` of the shortest window of `feature_class`, as CheckKey reports it.
  int64_t Used(const std::string& feature_class, const std::string& key = "") {
    auto c = Context(key);
    v1::CheckKeyRequest req;
    v1::CheckKeyResponse resp;
    grpc::Status s = anyai_->CheckKey(c.get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    for (const v1::ClassUsage& u : resp.classes()) {
      if (u.feature_class() == feature_class) return u.windows(0).used();
    }
    ADD_FAILURE() << "no class " << feature_class;
    return -1;
  }

  ::anyai::testing::TempDir dir_;
  std::atomic<int64_t> now_us_{absl::ToUnixMicros(absl::FromUnixSeconds(1'767'225'600))};
  std::unique_ptr<Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::AnyAI::Stub> anyai_;
  std::shared_ptr<grpc::Channel> admin_channel_;
  std::unique_ptr<v1::Admin::Stub> admin_;
};

google::rpc::Status Details(const grpc::Status& s) {
  google::rpc::Status rpc;
  EXPECT_TRUE(rpc.ParseFromString(s.error_details())) << "no grpc-status-details-bin";
  return rpc;
}

template <typename T>
bool Unpack(const google::rpc::Status& rpc, T* out) {
  for (const auto& any : rpc.details()) {
    if (any.type_url() == "type.googleapis.com/" + T::descriptor()->full_name()) {
      return out->ParseFromString(any.value());
    }
  }
  return false;
}

TEST_F(GrpcServerTest, ChatAnswersWithUsageAndRateLimitMetadata) {
  auto c = Context();
  v1::ChatCompletion resp;
  grpc::Status s = anyai_->CreateChatCompletion(c.get(), Chat("llama-3-8b-chat"), &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.object(), "chat.completion");
  EXPECT_EQ(resp.model(), "llama-3-8b-chat");
  ASSERT_EQ(resp.choices_size(), 1);
  EXPECT_FALSE(resp.choices(0).message().content().empty());
  EXPECT_EQ(resp.usage().total_tokens(),
            resp.usage().prompt_tokens() + resp.usage().completion_tokens());
  const auto& md = c->GetServerInitialMetadata();
  ASSERT_EQ(md.count("x-ratelimit-limit-requests"), 1u);
  EXPECT_EQ(md.find("x-ratelimit-limit-requests")->second, "10");
  EXPECT_EQ(md.find("x-ratelimit-remaining-requests")->second, "9");
  EXPECT_EQ(md.count("x-ratelimit-reset-requests"), 1u);
  EXPECT_EQ(md.count("x-ratelimit-limit-tokens"), 0u);  // the seed's plans limit no tokens
  ASSERT_EQ(md.count("ratelimit-policy"), 1u);
  EXPECT_EQ(md.find("ratelimit-policy")->second,
            R"("requests-1m";q=10;w=60, "requests-1d";q=2000;w=86400)");
  ASSERT_EQ(md.count("ratelimit"), 1u);
  EXPECT_THAT(
      std::string(md.find("ratelimit")->second.data(), md.find("ratelimit")->second.size()),
      ::testing::MatchesRegex(R"("requests-1m";r=9;t=[0-9]+, "requests-1d";r=1999;t=[0-9]+)"));
}

// The free plan's llm with token windows and a concurrency limit, as
// deploy/config/token-limits.textproto has them.
class GrpcTokenLimitsTest : public GrpcServerTest {
 protected:
  void Configure(v1::ServerConfig& config) override {
    for (v1::PlanConfig& plan : *config.mutable_plans()) {
      if (plan.name() != "free") continue;
      for (v1::FeatureClassLimits& c : *plan.mutable_classes()) {
        if (c.feature_class() != "llm") continue;
        v1::TokenWindowLimit* minute = c.add_token_windows();
        minute->mutable_length()->set_seconds(60);
        minute->set_max_tokens(20000);
        c.set_max_concurrent(2);
      }
    }
  }

  static std::string Value(const std::multimap<grpc::string_ref, grpc::string_ref>& md,
                           const std::string& name) {
    auto it = md.find(name);
    return it == md.end() ? "<absent>" : std::string(it->second.data(), it->second.size());
  }
};

TEST_F(GrpcTokenLimitsTest, MetadataCarriesTheSettledTokensAndEveryLimit) {
  v1::ChatCompletionRequest req = Chat("llama-3-8b-chat");
  req.set_max_tokens(50);
  auto c = Context();
  v1::ChatCompletion resp;
  grpc::Status s = anyai_->CreateChatCompletion(c.get(), req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const int64_t used = resp.usage().total_tokens();
  ASSERT_GT(used, 0);
  const auto& md = c->GetServerInitialMetadata();
  EXPECT_EQ(Value(md, "x-ratelimit-limit-tokens"), "20000");
  EXPECT_EQ(Value(md, "x-ratelimit-remaining-tokens"), absl::StrCat(20000 - used));
  EXPECT_NE(Value(md, "x-ratelimit-reset-tokens"), "<absent>");
  EXPECT_EQ(Value(md, "ratelimit-policy"),
            R"("requests-1m";q=10;w=60, "requests-1d";q=2000;w=86400, "tokens-1m";q=20000;w=60, )"
            R"("concurrency";q=2;qu="concurrent-requests")");
  EXPECT_THAT(Value(md, "ratelimit"),
              ::testing::MatchesRegex(absl::StrCat(
                  R"("requests-1m";r=9;t=[0-9]+, "requests-1d";r=1999;t=[0-9]+, "tokens-1m";r=)",
                  20000 - used, R"(;t=[0-9]+, "concurrency";r=2)")));
}

TEST_F(GrpcTokenLimitsTest, ARequestThatCanNeverFitNamesTheTokenWindowAndHasNoRetryInfo) {
  v1::ChatCompletionRequest req = Chat("llama-3-8b-chat");
  req.set_max_tokens(30000);
  auto c = Context();
  v1::ChatCompletion resp;
  grpc::Status s = anyai_->CreateChatCompletion(c.get(), req, &resp);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("but the free plan allows 20000 per 1m"));
  EXPECT_THAT(s.error_message(), HasSubstr("it can never be admitted"));
  const google::rpc::Status rpc = Details(s);
  google::rpc::QuotaFailure quota;
  google::rpc::RetryInfo retry;
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(Unpack(rpc, &quota));
  EXPECT_EQ(quota.violations(0).description(), "20000 tokens per 1m on the free plan");
  EXPECT_FALSE(Unpack(rpc, &retry));
  ASSERT_TRUE(Unpack(rpc, &info));
  EXPECT_EQ(info.metadata().at("limit_kind"), "tokens");
  EXPECT_EQ(info.metadata().at("never_fits"), "true");
  // The figures travel as trailing metadata on a failed call.
  const auto& md = c->GetServerTrailingMetadata();
  EXPECT_EQ(Value(md, "x-ratelimit-limit-tokens"), "20000");
  EXPECT_EQ(Value(md, "x-ratelimit-remaining-tokens"), "20000");  // a smaller call still fits
  EXPECT_NE(Value(md, "x-ratelimit-remaining-requests"), "0");
  EXPECT_NE(Value(md, "ratelimit-policy"), "<absent>");
}

TEST_F(GrpcServerTest, StreamsAChatInSeveralChunks) {
  auto c = Context();
  auto reader = anyai_->StreamChatCompletion(c.get(), Chat("gpt-4o", "tell me a story"));
  v1::ChatCompletionChunk chunk;
  std::string text;
  int chunks = 0;
  std::string finish;
  while (reader->Read(&chunk)) {
    ++chunks;
    EXPECT_EQ(chunk.object(), "chat.completion.chunk");
    text += chunk.choices(0).delta().content();
    if (chunk.choices(0).has_finish_reason()) finish = chunk.choices(0).finish_reason();
  }
  grpc::Status s = reader->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_GT(chunks, 2);
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(finish, "stop");
  EXPECT_EQ(Used("closed_llm"), 1);
}

TEST_F(GrpcServerTest, EveryOtherRpcAnswers) {
  {
    auto c = Context();
    v1::ListModelsResponse resp;
    ASSERT_TRUE(anyai_->ListModels(c.get(), {}, &resp).ok());
    EXPECT_EQ(resp.object(), "list");
    EXPECT_EQ(resp.data_size(), 103);
  }
  {
    auto c = Context();
    v1::GenerateImagesRequest req;
    req.set_prompt("a lighthouse");
    req.set_model("dall-e-2");
    req.set_response_format("b64_json");
    req.set_size("256x256");
    v1::GenerateImagesResponse resp;
    grpc::Status s = anyai_->GenerateImages(c.get(), req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(resp.data_size(), 1);
    EXPECT_FALSE(resp.data(0).b64_json().empty());
  }
  {
    auto c = Context();
    v1::ImagineRequest req;
    req.set_prompt("a red fox");
    req.set_width(64);
    req.set_height(96);
    v1::ImagineResponse resp;
    grpc::Status s = anyai_->Imagine(c.get(), req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.content_type(), "image/png");
    ASSERT_GT(resp.image().size(), 24u);
    EXPECT_EQ(resp.image().substr(1, 3), "PNG");
  }
  {
    auto c = Context();
    v1::AskRequest req;
    req.set_prompt("what is a sliding window?");
    auto reader = anyai_->Ask(c.get(), req);
    v1::AskChunk chunk;
    int n = 0;
    while (reader->Read(&chunk)) {
      ++n;
      EXPECT_FALSE(chunk.message().empty());
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_GE(n, 2);
  }
  {
    auto c = Context();
    v1::DescribeImageRequest req;
    req.set_url("https://example.com/cat.png");
    v1::DescribeImageResponse resp;
    grpc::Status s = anyai_->DescribeImage(c.get(), req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_FALSE(resp.description().empty());
  }
  EXPECT_EQ(Used("image_generation"), 1);
  EXPECT_EQ(Used("imagine"), 1);
  EXPECT_EQ(Used("globalask"), 1);
  EXPECT_EQ(Used("vision"), 1);
}

// The first window of every row of the seed's table, for an anonymous (free) caller and a
// premium key: exactly the limit is admitted, the next is RESOURCE_EXHAUSTED with details.
TEST_F(GrpcServerTest, EnforcesEveryPlanTableRow) {
  const std::string premium = CreateKey("premium");
  struct Row {
    std::string feature_class;
    int free_limit;
    int premium_limit;
  };
  const std::vector<Row> rows = {
      {"llm", 10, 30},         {"closed_llm", 25, 50}, {"image_generation", 120, 120},
      {"globalask", 120, 120}, {"imagine", 20, 20},    {"vision", 25, 25}};
  for (const std::string& key : {std::string(), premium}) {
    for (const Row& row : rows) {
      SCOPED_TRACE(row.feature_class + (key.empty() ? " free" : " premium"));
      const int limit = key.empty() ? row.free_limit : row.premium_limit;
      auto call = [&]() -> grpc::Status {
        auto c = Context(key);
        if (row.feature_class == "llm" || row.feature_class == "closed_llm") {
          v1::ChatCompletion resp;
          return anyai_->CreateChatCompletion(
              c.get(),
              Chat(row.feature_class == "llm" ? "Mixtral-8x22B" : "claude-3-opus-20240229"), &resp);
        }
        if (row.feature_class == "image_generation") {
          v1::GenerateImagesRequest req;
          req.set_prompt("x");
          req.set_model("dall-e-2");
          req.set_size("256x256");
          v1::GenerateImagesResponse resp;
          return anyai_->GenerateImages(c.get(), req, &resp);
        }
        if (row.feature_class == "imagine") {
          v1::ImagineRequest req;
          req.set_prompt("x");
          req.set_width(64);
          req.set_height(64);
          v1::ImagineResponse resp;
          return anyai_->Imagine(c.get(), req, &resp);
        }
        if (row.feature_class == "globalask") {
          v1::AskRequest req;
          req.set_prompt("x");
          auto reader = anyai_->Ask(c.get(), req);
          v1::AskChunk chunk;
          while (reader->Read(&chunk)) {
          }
          return reader->Finish();
        }
        v1::DescribeImageRequest req;
        req.set_url("https://example.com/a.png");
        v1::DescribeImageResponse resp;
        return anyai_->DescribeImage(c.get(), req, &resp);
      };
      for (int i = 0; i < limit; ++i) {
        grpc::Status s = call();
        ASSERT_TRUE(s.ok()) << "request " << i + 1 << ": " << s.error_message();
      }
      grpc::Status refused = call();
      ASSERT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      EXPECT_THAT(refused.error_message(), HasSubstr(row.feature_class));
      const google::rpc::Status rpc = Details(refused);
      google::rpc::QuotaFailure quota;
      google::rpc::RetryInfo retry;
      google::rpc::ErrorInfo info;
      EXPECT_TRUE(Unpack(rpc, &quota));
      EXPECT_TRUE(Unpack(rpc, &retry));
      ASSERT_TRUE(Unpack(rpc, &info));
      EXPECT_EQ(info.reason(), "RATE_LIMIT_EXCEEDED");
      EXPECT_EQ(info.metadata().at("feature_class"), row.feature_class);
      EXPECT_EQ(info.metadata().at("limit"), absl::StrCat(limit));
      EXPECT_GT(retry.retry_delay().seconds(), 0);
    }
  }
}

TEST_F(GrpcServerTest, TheDayWindowHoldsAcrossMinutes) {
  // free llm: 10/min and 2000/day. Ten a minute for 200 minutes reach the day's 2000.
  for (int minute = 0; minute < 200; ++minute) {
    for (int i = 0; i < 10; ++i) {
      ASSERT_TRUE(CallChat(Chat("phi-2")).ok()) << minute << "/" << i;
    }
    Advance(absl::Seconds(62));
  }
  grpc::Status refused = CallChat(Chat("phi-2"));
  ASSERT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(Unpack(Details(refused), &info));
  EXPECT_EQ(info.metadata().at("limit"), "2000");
  EXPECT_EQ(info.metadata().at("window_seconds"), "86400");
}

TEST_F(GrpcServerTest, BadInputIsRefusedAndNothingIsCounted) {
  auto bad_chat = [&](auto mutate) {
    v1::ChatCompletionRequest req = Chat("llama-3-8b-chat");
    mutate(req);
    return CallChat(req);
  };
  const std::vector<std::pair<std::string, grpc::Status>> cases = {
      {"no messages", bad_chat([](auto& r) { r.clear_messages(); })},
      {"unknown role", bad_chat([](auto& r) { r.mutable_messages(0)->set_role("wizard"); })},
      {"system not first", bad_chat([](auto& r) {
         auto* m = r.add_messages();
         m->set_role("system");
         m->set_content("late");
       })},
      {"too long for free",
       bad_chat([](auto& r) { r.mutable_messages(0)->set_content(std::string(1001, 'a')); })},
      {"max_tokens 0", bad_chat([](auto& r) { r.set_max_tokens(0); })},
      {"temperature 3", bad_chat([](auto& r) { r.set_temperature(3); })},
      {"top_p 2", bad_chat([](auto& r) { r.set_top_p(2); })},
      {"top_k -1", bad_chat([](auto& r) { r.set_top_k(-1); })},
  };
  for (const auto& [name, s] : cases) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << name;
    google::rpc::BadRequest bad;
    EXPECT_TRUE(Unpack(Details(s), &bad)) << name;
    EXPECT_GT(bad.field_violations_size(), 0) << name;
  }
  EXPECT_EQ(bad_chat([](auto& r) { r.set_model("gpt-17"); }).error_code(),
            grpc::StatusCode::NOT_FOUND);
  // Over gRPC, protobuf itself refuses a string field that is not UTF-8 before the gateway
  // sees it; the gateway's own check (for the HTTP front) is in validation_test.
  EXPECT_FALSE(bad_chat([](auto& r) { r.mutable_messages(0)->set_content("\xc3\x28"); }).ok());
  {
    v1::ImagineRequest req;
    req.set_prompt("x");
    req.set_model("pluto");
    req.set_width(512);
    v1::ImagineResponse resp;
    auto c = Context();
    grpc::Status s = anyai_->Imagine(c.get(), req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("width"));
  }
  {
    v1::ImagineRequest req;
    req.set_prompt("x");
    req.set_width(100000);
    v1::ImagineResponse resp;
    auto c = Context();
    EXPECT_EQ(anyai_->Imagine(c.get(), req, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    v1::DescribeImageRequest req;
    req.set_url("not a url");
    v1::DescribeImageResponse resp;
    auto c = Context();
    EXPECT_EQ(anyai_->DescribeImage(c.get(), req, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    v1::GenerateImagesRequest req;
    req.set_prompt("x");
    req.set_n(100);
    v1::GenerateImagesResponse resp;
    auto c = Context();
    EXPECT_EQ(anyai_->GenerateImages(c.get(), req, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  EXPECT_EQ(Used("llm"), 0);
  EXPECT_EQ(Used("imagine"), 0);
  EXPECT_EQ(Used("vision"), 0);
  EXPECT_EQ(Used("image_generation"), 0);
}

TEST_F(GrpcServerTest, UnknownMalformedAndRevokedKeysAreUnauthenticated) {
  EXPECT_EQ(CallChat(Chat("phi-2"), "sk-anyai-" + std::string(64, '0')).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(CallChat(Chat("phi-2"), "nonsense").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  {
    // Present but blank: refused, never taken for anonymous.
    auto c = Context();
    c->AddMetadata("authorization", "");
    v1::ChatCompletion resp;
    EXPECT_EQ(anyai_->CreateChatCompletion(c.get(), Chat("phi-2"), &resp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  const std::string key = CreateKey("premium");
  ASSERT_TRUE(CallChat(Chat("phi-2"), key).ok());
  v1::KeyRecord record;
  {
    auto c = Context(kAdminToken);
    v1::GetUsageRequest req;
    req.set_key(key);
    v1::GetUsageResponse usage;
    ASSERT_TRUE(admin_->GetUsage(c.get(), req, &usage).ok());
    record = usage.key();
    EXPECT_EQ(usage.plan(), "premium");
  }
  {
    auto c = Context(kAdminToken);
    v1::RevokeKeyRequest req;
    req.set_key_id(record.key_id());
    ASSERT_TRUE(admin_->RevokeKey(c.get(), req, &record).ok());
    EXPECT_TRUE(record.revoked());
  }
  grpc::Status s = CallChat(Chat("phi-2"), key);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  // Never a silent fall-back to anonymous: the anonymous tenant counted nothing.
  EXPECT_EQ(Used("llm"), 0);
}

TEST_F(GrpcServerTest, AdminNeedsTheAdminTokenNotAnApiKey) {
  const std::string key = CreateKey("free");
  for (const std::string& token : {std::string(), key, std::string("wrong")}) {
    auto c = Context(token);
    v1::ListKeysResponse resp;
    EXPECT_EQ(admin_->ListKeys(c.get(), {}, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
}

TEST_F(GrpcServerTest, AdminIsNotServedOnThePublicPort) {
  auto public_admin = v1::Admin::NewStub(channel_);
  v1::ListKeysResponse resp;
  auto c = Context(kAdminToken);
  EXPECT_EQ(public_admin->ListKeys(c.get(), {}, &resp).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  auto on_its_port = Context(kAdminToken);
  EXPECT_TRUE(admin_->ListKeys(on_its_port.get(), {}, &resp).ok());
  EXPECT_NE(server_->admin_address(), server_->grpc_address());
}

// The Admin port serves the Admin service alone: the AnyAI service asked there is UNIMPLEMENTED
// (answered at once, not left waiting), and the port still serves Admin after it.
TEST_F(GrpcServerTest, TheAdminPortServesOnlyTheAdminService) {
  auto models_on_admin = v1::AnyAI::NewStub(admin_channel_);
  grpc::ClientContext c;
  c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ListModelsResponse models;
  EXPECT_EQ(models_on_admin->ListModels(&c, {}, &models).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  auto admin = Context(kAdminToken);
  v1::ListKeysResponse keys;
  EXPECT_TRUE(admin_->ListKeys(admin.get(), {}, &keys).ok());
}

TEST_F(GrpcServerTest, HealthIsServingForTheServerAndTheServiceAndNotFoundForOthers) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  for (const std::string service : {"", "anyai.v1.AnyAI"}) {
    grpc::ClientContext c;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&c, req, &resp).ok()) << service;
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
  grpc::ClientContext c;
  grpc::health::v1::HealthCheckRequest req;
  req.set_service("anyai.v1.Admin");  // served on its own port, not this one
  grpc::health::v1::HealthCheckResponse resp;
  EXPECT_EQ(health->Check(&c, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(GrpcServerTest, WatchSendsTheStatusAndEndsWhenTheServerStops) {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext c;
  c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  std::unique_ptr<grpc::ClientReader<grpc::health::v1::HealthCheckResponse>> watch =
      health->Watch(&c, {});
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(watch->Read(&resp));
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  // Shutdown ends the watch (else it would wait out the whole grace period).
  const absl::Time began = absl::Now();
  server_->Shutdown(absl::ZeroDuration(), absl::Seconds(20));
  EXPECT_LT(absl::Now() - began, absl::Seconds(15));
  while (watch->Read(&resp)) {
  }
  EXPECT_TRUE(watch->Finish().ok());
}

TEST_F(GrpcServerTest, AnOpenReflectionStreamEndsWhenTheServerStops) {
  namespace reflection = grpc::reflection::v1alpha;
  auto stub = reflection::ServerReflection::NewStub(channel_);
  grpc::ClientContext c;
  c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = stub->ServerReflectionInfo(&c);
  reflection::ServerReflectionRequest req;
  req.set_list_services("");
  ASSERT_TRUE(stream->Write(req));
  reflection::ServerReflectionResponse resp;
  ASSERT_TRUE(stream->Read(&resp));  // open, answered, and left open as an idle grpcurl would
  // Shutdown cancels it (else it would wait out the whole grace period).
  const absl::Time began = absl::Now();
  server_->Shutdown(absl::ZeroDuration(), absl::Seconds(20));
  EXPECT_LT(absl::Now() - began, absl::Seconds(15));
  while (stream->Read(&resp)) {
  }
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(GrpcServerTest, AnUnreadableTlsFileFailsTheStartNamingTheField) {
  server_.reset();
  for (const auto& [field, set] :
       std::vector<std::pair<std::string, std::function<void(v1::ServerConfig&)>>>{
           {"tls.cert_file",
            [&](v1::ServerConfig& c) {
              c.mutable_tls()->set_cert_file(dir_.Sub("missing-cert.pem"));
              c.mutable_tls()->set_key_file(dir_.Sub("missing-key.pem"));
            }},
           {"admin_tls.cert_file", [&](v1::ServerConfig& c) {
              c.mutable_admin_tls()->set_cert_file(dir_.Sub("missing-cert.pem"));
              c.mutable_admin_tls()->set_key_file(dir_.Sub("missing-key.pem"));
            }}}) {
    v1::ServerConfig config = DefaultConfig();
    config.set_grpc_listen("127.0.0.1:0");
    config.set_http_listen("127.0.0.1:0");
    config.set_admin_listen("127.0.0.1:0");
    config.set_data_dir(dir_.Sub("data"));
    set(config);
    absl::StatusOr<std::unique_ptr<Server>> server = Server::Start(config);
    ASSERT_FALSE(server.ok()) << field;
    EXPECT_THAT(server.status().message(), HasSubstr(field));
  }
}

TEST_F(GrpcServerTest, AdminManagesKeys) {
  const std::string key = CreateKey("free");
  v1::ListKeysResponse list;
  {
    auto c = Context(kAdminToken);
    ASSERT_TRUE(admin_->ListKeys(c.get(), {}, &list).ok());
  }
  ASSERT_EQ(list.keys_size(), 1);
  const std::string id = list.keys(0).key_id();
  EXPECT_EQ(list.keys(0).plan(), "free");
  EXPECT_THAT(list.keys(0).masked_key(), ::testing::Not(HasSubstr(key.substr(20))));
  {
    auto c = Context(kAdminToken);
    v1::UpdateKeyRequest req;
    req.set_key_id(id);
    req.set_plan("premium");
    v1::KeyRecord r;
    ASSERT_TRUE(admin_->UpdateKey(c.get(), req, &r).ok());
    EXPECT_EQ(r.plan(), "premium");
  }
  {
    auto c = Context(kAdminToken);
    v1::UpdateKeyRequest req;
    req.set_key_id(id);
    req.set_plan("gold");
    v1::KeyRecord r;
    EXPECT_EQ(admin_->UpdateKey(c.get(), req, &r).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    auto c = Context(kAdminToken);
    v1::GetKeyRequest req;
    req.set_key_id(id);
    v1::KeyRecord r;
    ASSERT_TRUE(admin_->GetKey(c.get(), req, &r).ok());
    EXPECT_EQ(r.plan(), "premium");
  }
  // The upgraded key gets premium limits: 30 chat requests a minute.
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(CallChat(Chat("phi-2"), key).ok()) << i;
  EXPECT_EQ(CallChat(Chat("phi-2"), key).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(GrpcServerTest, AnIpv6ClientIsOneAnonymousTenantWhateverConnectionItUses) {
  server_.reset();
  Start("[::1]:0");
  ASSERT_EQ(server_->grpc_address().rfind("[::1]:", 0), 0u) << server_->grpc_address();
  for (int connection = 0; connection < 3; ++connection) {
    // A channel of its own (a new connection, a new client port) for every call.
    grpc::ChannelArguments args;
    args.SetInt("anyai.test.connection", connection);
    auto channel = grpc::CreateCustomChannel(server_->grpc_address(),
                                             grpc::InsecureChannelCredentials(), args);
    v1::ChatCompletion resp;
    auto c = Context();
    ASSERT_TRUE(
        v1::AnyAI::NewStub(channel)->CreateChatCompletion(c.get(), Chat("phi-2"), &resp).ok());
  }
  EXPECT_EQ(Used("llm"), 3);
}

TEST_F(GrpcServerTest, TheSeedsChatExampleResolvesClaude3OpusAndEchoesIt) {
  const std::string key = CreateKey("premium");
  v1::ChatCompletionRequest req;  // the seed's example, field by field
  req.set_model("claude-3-opus");
  for (const auto& [role, content] : std::vector<std::pair<std::string, std::string>>{
           {"system", "System prompt (only the first message, once)"},
           {"user", "Message content"},
           {"assistant", "Assistant response"}}) {
    v1::ChatMessage* m = req.add_messages();
    m->set_role(role);
    m->set_content(content);
  }
  req.set_max_tokens(2048);
  req.set_temperature(0.7);
  req.set_top_p(0.5);
  req.set_top_k(0);
  v1::ChatCompletion resp;
  grpc::Status s = CallChat(req, key, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.model(), "claude-3-opus");
  EXPECT_EQ(resp.object(), "chat.completion");
  EXPECT_EQ(Used("closed_llm", key), 1);  // the class of claude-3-opus-20240229
  EXPECT_EQ(Used("llm", key), 0);
}

TEST_F(GrpcServerTest, GeneratedImageUrlsPointAtTheHttpFront) {
  v1::GenerateImagesRequest req;
  req.set_prompt("A futuristic cityscape");
  req.set_model("dall-e-2");
  req.set_size("256x256");
  req.set_n(2);
  v1::GenerateImagesResponse resp;
  auto c = Context();
  grpc::Status s = anyai_->GenerateImages(c.get(), req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.data_size(), 2);
  const std::string prefix =
      absl::StrCat("http://127.0.0.1:", server_->http_port(), "/v1/images/files/");
  for (const v1::Image& image : resp.data()) {
    EXPECT_EQ(image.url().rfind(prefix, 0), 0u) << image.url();
    EXPECT_TRUE(image.b64_json().empty());
    const std::string file = image.url().substr(prefix.size());
    absl::StatusOr<ImageStore::Image> png = server_->gateway().FetchImage(file);
    ASSERT_TRUE(png.ok()) << png.status();
    EXPECT_EQ(png->png->substr(1, 3), "PNG");
  }
}

TEST_F(GrpcServerTest, CheckKeyReportsAMaskedKeyAndItsUsage) {
  const std::string key = CreateKey("premium");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(CallChat(Chat("phi-2"), key).ok());
  auto c = Context();  // anonymous caller, asking about a key (?key= in HTTP)
  v1::CheckKeyRequest req;
  req.set_key(key);
  v1::CheckKeyResponse resp;
  ASSERT_TRUE(anyai_->CheckKey(c.get(), req, &resp).ok());
  EXPECT_EQ(resp.plan(), "premium");
  EXPECT_NE(resp.masked_key(), key);
  EXPECT_THAT(resp.masked_key(), HasSubstr("…"));
  EXPECT_GT(resp.created(), 0);
  ASSERT_GT(resp.classes_size(), 0);
  EXPECT_EQ(resp.classes(0).feature_class(), "llm");
  EXPECT_EQ(resp.classes(0).windows(0).used(), 3);
  EXPECT_EQ(resp.classes(0).windows(0).limit(), 30);
}

TEST_F(GrpcServerTest, KeysAndUsageSurviveARestart) {
  const std::string key = CreateKey("free");
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(CallChat(Chat("phi-2"), key).ok());
  Restart();
  EXPECT_EQ(CallChat(Chat("phi-2"), key).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Used("llm", key), 10);
}

}  // namespace
}  // namespace anyai::server
