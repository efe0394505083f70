// Tests for server/providers/provider_registry.cc: the providers a config defines come into being
// by name, or the config is refused with the bad field named.
#include "server/providers/provider_registry.h"

#include <stdlib.h>

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "anyai/v1/anyai.pb.h"
#include "anyai/v1/config.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/providers/openai/fake_upstream.h"
#include "tests/testing/status_matchers.h"

namespace anyai::server {
namespace {

using ::anyai::testing::FakeUpstream;
using ::anyai::testing::IsOk;
using ::anyai::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

absl::Time FixedNow() { return absl::FromUnixSeconds(1700000000); }

v1::ProviderConfig* AddOpenAI(v1::ServerConfig& config, const std::string& name,
                              const std::string& base_url) {
  v1::ProviderConfig* p = config.add_providers();
  p->set_name(name);
  p->set_type(v1::PROVIDER_TYPE_OPENAI);
  p->set_base_url(base_url);
  return p;
}

v1::ChatCompletionRequest ChatRequest() {
  v1::ChatCompletionRequest request;
  request.set_model("gpt-4o");
  v1::ChatMessage* user = request.add_messages();
  user->set_role("user");
  user->set_content("hi");
  return request;
}

class ProviderRegistryTest : public ::testing::Test {
 protected:
  ProviderRegistryTest() {
    // libcurl honours proxy variables; the fake upstream must be reached directly.
    for (const char* name : {"http_proxy", "https_proxy", "all_proxy", "ALL_PROXY"}) {
      unsetenv(name);
    }
  }
};

TEST_F(ProviderRegistryTest, AnEmptyConfigHasTheBuiltinOnly) {
  absl::StatusOr<ProviderRegistry> registry = MakeProviders(v1::ServerConfig(), &FixedNow);

  ASSERT_OK(registry);
  EXPECT_EQ(registry->size(), 1u);
  ASSERT_NE(registry->Find("builtin"), nullptr);
  EXPECT_EQ(registry->Find("openai"), nullptr);
  absl::StatusOr<v1::ChatCompletion> answer = registry->Find("builtin")->Chat(ChatRequest());
  ASSERT_OK(answer);
  EXPECT_EQ(answer->created(), 1700000000);
}

TEST_F(ProviderRegistryTest, BuildsAnOpenAIProviderPerEntryThatTalksToItsUpstream) {
  std::unique_ptr<FakeUpstream> upstream = FakeUpstream::Start();
  upstream->Enqueue(FakeUpstream::Json(
      200, R"({"choices":[{"message":{"role":"assistant","content":"hello"}}]})"));
  v1::ServerConfig config;
  v1::ProviderConfig* p = AddOpenAI(config, "up", upstream->base_url() + "/");
  p->set_api_key("sk-file");
  (*p->mutable_model_map())["gpt-4o"] = "upstream-model";
  p->mutable_timeout()->set_seconds(5);
  v1::ProviderConfig* offline = config.add_providers();
  offline->set_name("offline");
  offline->set_type(v1::PROVIDER_TYPE_BUILTIN);

  absl::StatusOr<ProviderRegistry> registry = MakeProviders(config, &FixedNow);

  ASSERT_OK(registry);
  const auto by_name = registry->ByName();
  std::vector<std::string> names;
  for (const auto& [name, provider] : by_name) {
    EXPECT_NE(provider, nullptr);
    names.push_back(name);
  }
  EXPECT_THAT(names, UnorderedElementsAre("builtin", "up", "offline"));
  absl::StatusOr<v1::ChatCompletion> answer = registry->Find("up")->Chat(ChatRequest());
  ASSERT_OK(answer);
  EXPECT_EQ(answer->choices(0).message().content(), "hello");
  ASSERT_EQ(upstream->requests().size(), 1u);
  EXPECT_EQ(upstream->requests()[0].target, "/v1/chat/completions");
  EXPECT_EQ(upstream->requests()[0].Header("authorization"), "Bearer sk-file");
  EXPECT_THAT(upstream->requests()[0].body, HasSubstr("\"upstream-model\""));
}

TEST_F(ProviderRegistryTest, TheKeyCanComeFromTheEnvironment) {
  std::unique_ptr<FakeUpstream> upstream = FakeUpstream::Start();
  upstream->Enqueue(FakeUpstream::Json(200, R"({"choices":[{"message":{"content":"ok"}}]})"));
  ASSERT_EQ(setenv("ANYAI_TEST_UPSTREAM_KEY", "sk-from-env", 1), 0);
  v1::ServerConfig config;
  AddOpenAI(config, "up", upstream->base_url())->set_api_key_env("ANYAI_TEST_UPSTREAM_KEY");

  absl::StatusOr<ProviderRegistry> registry = MakeProviders(config, &FixedNow);
  unsetenv("ANYAI_TEST_UPSTREAM_KEY");

  ASSERT_OK(registry);
  ASSERT_OK(registry->Find("up")->Chat(ChatRequest()));
  EXPECT_EQ(upstream->requests()[0].Header("authorization"), "Bearer sk-from-env");
}

TEST_F(ProviderRegistryTest, BadProviderEntriesAreRefusedNamingTheField) {
  struct Case {
    const char* what;
    std::function<void(v1::ServerConfig&)> edit;
    const char* field;
  };
  const Case cases[] = {
      {"no name", [](v1::ServerConfig& c) { AddOpenAI(c, "", "http://u/v1"); },
       "providers[0].name: required"},
      {"builtin redefined", [](v1::ServerConfig& c) { AddOpenAI(c, "builtin", "http://u/v1"); },
       "providers[0].name: \"builtin\" is predefined"},
      {"twice",
       [](v1::ServerConfig& c) {
         AddOpenAI(c, "up", "http://u/v1");
         AddOpenAI(c, "up", "http://v/v1");
       },
       "providers[1].name: \"up\" is defined twice"},
      {"no type",
       [](v1::ServerConfig& c) {
         AddOpenAI(c, "up", "http://u/v1")->set_type(v1::PROVIDER_TYPE_UNSPECIFIED);
       },
       "providers[0].type: required"},
      {"unknown type",
       [](v1::ServerConfig& c) {
         AddOpenAI(c, "up", "http://u/v1")->set_type(static_cast<v1::ProviderType>(42));
       },
       "providers[0].type: unknown value 42"},
      {"no base_url", [](v1::ServerConfig& c) { AddOpenAI(c, "up", ""); },
       "providers[0].base_url: required for PROVIDER_TYPE_OPENAI"},
      {"bad base_url", [](v1::ServerConfig& c) { AddOpenAI(c, "up", "ftp://u/v1"); },
       "providers[0].base_url: \"ftp://u/v1\" is not an http(s) base URL"},
      {"unset env",
       [](v1::ServerConfig& c) {
         AddOpenAI(c, "up", "http://u/v1")->set_api_key_env("ANYAI_TEST_SURELY_UNSET");
       },
       "providers[0].api_key_env: the environment variable \"ANYAI_TEST_SURELY_UNSET\" is not "
       "set"},
      {"negative timeout",
       [](v1::ServerConfig& c) {
         AddOpenAI(c, "up", "http://u/v1")->mutable_timeout()->set_seconds(-1);
       },
       "providers[0].timeout: must be positive"},
      {"bad allow-list", [](v1::ServerConfig& c) { c.add_ssrf_allowlist("10.0.0.0/40"); },
       "ssrf_allowlist[0]"},
      {"ask to openai",
       [](v1::ServerConfig& c) {
         AddOpenAI(c, "up", "http://u/v1");
         c.mutable_ask()->set_provider("up");
       },
       "ask.provider: \"up\" is an OpenAI-compatible provider"},
  };
  for (const Case& c : cases) {
    v1::ServerConfig config;
    c.edit(config);
    EXPECT_THAT(MakeProviders(config, &FixedNow),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)))
        << c.what;
  }
}

TEST_F(ProviderRegistryTest, ConfigErrorsNeverShowTheApiKey) {
  v1::ServerConfig config;
  AddOpenAI(config, "up", "nonsense")->set_api_key("sk-very-secret");
  const absl::Status s = MakeProviders(config, &FixedNow).status();
  EXPECT_THAT(
      s, StatusIs(absl::StatusCode::kInvalidArgument, ::testing::Not(HasSubstr("sk-very-secret"))));
}

}  // namespace
}  // namespace anyai::server
