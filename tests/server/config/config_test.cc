// Tests for server/config/config.cc: the defaults are the seed's, files in both formats merge over
// them as config.h documents, flags and the environment win, and every bad setting is refused
// with a message that names the field.
#include "server/config/config.h"

#include <stdlib.h>

#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "anyai/v1/config.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "quota/plan.h"
#include "server/gateway/catalogue.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace anyai::server {
namespace {

using ::anyai::testing::IsOk;
using ::anyai::testing::StatusIs;
using ::anyai::testing::TempDir;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// Writes `contents` to `name` in `dir`; returns its path.
std::string WriteFile(const TempDir& dir, const std::string& name, const std::string& contents) {
  const std::string path = dir.Sub(name);
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

// Sets an environment variable for the life of the object, then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value == nullptr) {
      unsetenv(name);
    } else {
      setenv(name, value, 1);
    }
  }
  ~ScopedEnv() {
    if (old_.has_value()) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

v1::ServerConfig FromText(const std::string& text) {
  absl::StatusOr<v1::ServerConfig> config = ParseConfig(text, ConfigFormat::kTextproto, "test");
  EXPECT_OK(config);
  return config.ok() ? *config : v1::ServerConfig();
}

absl::Status ValidateText(const std::string& text) {
  absl::StatusOr<v1::ServerConfig> config = ParseConfig(text, ConfigFormat::kTextproto, "test");
  if (!config.ok()) return config.status();
  return ValidateConfig(*config);
}

// The default plans as textproto, with `free_llm_minute` as the free plan's llm per-minute
// limit: what a file must say to change one cell.
std::string PlansWithFreeLlmPerMinute(int64_t free_llm_minute) {
  v1::ServerConfig plans_only;
  *plans_only.mutable_plans() = DefaultConfig().plans();
  plans_only.mutable_plans(0)->mutable_classes(0)->mutable_windows(0)->set_max_requests(
      free_llm_minute);
  std::string text;
  google::protobuf::TextFormat::PrintToString(plans_only, &text);
  return text;
}

// --- Defaults ---

// The engine's default table as the config runs it: the reserve of a plan that names none is
// the config's 1024 (it matters only with token windows, which the defaults do not have).
quota::PlanTable DefaultPlansWithReserve() {
  quota::PlanTable table = quota::DefaultPlanTable();
  for (quota::Plan& plan : table.plans) {
    if (plan.default_token_reserve == 0) plan.default_token_reserve = 1024;
  }
  return table;
}

TEST(DefaultConfigTest, PlansAreTheSeedsTables) {
  absl::StatusOr<quota::PlanTable> plans = PlanTableFromConfig(DefaultConfig());
  ASSERT_OK(plans);
  EXPECT_EQ(*plans, DefaultPlansWithReserve());
  absl::StatusOr<quota::PlanTable> empty = PlanTableFromConfig(v1::ServerConfig());
  ASSERT_OK(empty);
  EXPECT_EQ(*empty, DefaultPlansWithReserve()) << "no plans in the config: the same table";
}

TEST(DefaultConfigTest, LimitsNoTokensSpendOrConcurrencyAndPricesNothing) {
  const v1::ServerConfig c = DefaultConfig();
  ASSERT_EQ(c.plans_size(), 2);
  for (const v1::PlanConfig& plan : c.plans()) {
    EXPECT_EQ(plan.default_token_reserve(), 1024) << plan.name();
    for (const v1::FeatureClassLimits& limits : plan.classes()) {
      EXPECT_EQ(limits.token_windows_size(), 0) << plan.name() << " " << limits.feature_class();
      EXPECT_EQ(limits.spend_windows_size(), 0) << plan.name() << " " << limits.feature_class();
      EXPECT_EQ(limits.max_concurrent(), 0) << plan.name() << " " << limits.feature_class();
    }
  }
  for (const v1::ModelConfig& m : c.models()) {
    EXPECT_EQ(m.input_usd_per_million_tokens(), 0) << m.id();
    EXPECT_EQ(m.output_usd_per_million_tokens(), 0) << m.id();
  }
  EXPECT_FALSE(c.charge_upstream_failures());
  absl::StatusOr<Catalogue> catalogue = CatalogueFromConfig(c);
  ASSERT_OK(catalogue);
  for (const ModelInfo& m : catalogue->models()) {
    EXPECT_EQ(PriceMicroUsd(m, 1000000, 1000000), 0) << m.id;
  }
}

TEST(DefaultConfigTest, EverySettingHasItsDocumentedDefault) {
  const v1::ServerConfig c = DefaultConfig();
  EXPECT_EQ(c.grpc_listen(), "0.0.0.0:50051");
  EXPECT_EQ(c.http_listen(), "0.0.0.0:8080");
  EXPECT_EQ(c.data_dir(), "data");
  EXPECT_EQ(c.admin_token(), "");
  EXPECT_EQ(c.durability(), v1::DURABILITY_PROCESS_CRASH);
  EXPECT_EQ(c.storage_failure_policy(), v1::STORAGE_FAILURE_POLICY_FAIL_CLOSED);
  EXPECT_EQ(c.anonymous_plan(), "free");
  EXPECT_EQ(c.providers_size(), 0);
  EXPECT_EQ(c.default_chat_provider(), "builtin");
  EXPECT_THAT(c.image_generation().models(), ElementsAre("dall-e-3", "dall-e-2"));
  EXPECT_EQ(c.image_generation().default_model(), "dall-e-3");
  EXPECT_EQ(c.image_generation().provider(), "builtin");
  EXPECT_THAT(c.imagine().models(), ElementsAre("sdxl", "pluto", "dall-e-2", "dall-e-3"));
  EXPECT_EQ(c.imagine().default_model(), "sdxl");
  EXPECT_EQ(c.imagine().provider(), "builtin");
  EXPECT_EQ(c.ask().models_size(), 0);
  EXPECT_EQ(c.ask().provider(), "builtin");
  EXPECT_THAT(c.vision().models(), ElementsAre("gpt-4o", "gpt-4o-mini", "gemini-pro-vision"));
  EXPECT_EQ(c.vision().default_model(), "gemini-pro-vision");
  EXPECT_EQ(c.vision().provider(), "builtin");
  EXPECT_EQ(c.trusted_proxies_size(), 0);
  EXPECT_EQ(c.ssrf_allowlist_size(), 0);
  EXPECT_EQ(c.idle_tenant_timeout().seconds(), 600);
  EXPECT_EQ(c.max_body_bytes(), 1048576);
  EXPECT_EQ(c.max_header_bytes(), 16384);
  EXPECT_EQ(c.http_idle_timeout().seconds(), 60);
  EXPECT_EQ(c.http_read_timeout().seconds(), 30);
  EXPECT_EQ(c.max_messages(), 256);
  EXPECT_EQ(c.postgres_dsn(), "");
  EXPECT_EQ(c.key_cache_ttl().seconds(), 5);
  EXPECT_EQ(c.key_cache_capacity(), 1000000);
  EXPECT_EQ(c.handoff_flush_interval().seconds(), 1);
  EXPECT_EQ(c.handoff_flush_interval().nanos(), 0);
  EXPECT_OK(ValidateConfig(c));
}

TEST(DefaultConfigTest, ModelsAreTheSeedCatalogueFollowingTheDefaultProvider) {
  const v1::ServerConfig c = DefaultConfig();
  const std::vector<ModelInfo> seed = DefaultModels();
  ASSERT_EQ(c.models_size(), static_cast<int>(seed.size()));
  for (int i = 0; i < c.models_size(); ++i) {
    EXPECT_EQ(c.models(i).id(), seed[i].id);
    EXPECT_EQ(c.models(i).owned_by(), seed[i].owned_by);
    EXPECT_EQ(c.models(i).created(), seed[i].created);
    EXPECT_EQ(c.models(i).feature_class(), seed[i].feature_class);
    EXPECT_EQ(c.models(i).provider(), "") << "empty: follows default_chat_provider";
  }
  absl::StatusOr<Catalogue> catalogue = CatalogueFromConfig(c);
  ASSERT_OK(catalogue);
  EXPECT_EQ(catalogue->models(), seed);
}

TEST(DefaultConfigTest, AnEmptyOverrideGivesTheDefaults) {
  EXPECT_TRUE(MessageDifferencer::Equals(MergeOverDefaults(v1::ServerConfig()), DefaultConfig()));
}

// --- Loading files ---

TEST(LoadConfigFileTest, TextprotoOverridesWhatItSets) {
  TempDir dir;
  const std::string path = WriteFile(dir, "anyai.textproto", R"pb(
    # a comment
    http_listen: "127.0.0.1:9090"
    durability: DURABILITY_FSYNC
    idle_tenant_timeout { nanos: 500000000 }
    max_messages: 16
  )pb");
  absl::StatusOr<v1::ServerConfig> c = LoadConfigFile(path);
  ASSERT_OK(c);
  EXPECT_EQ(c->http_listen(), "127.0.0.1:9090");
  EXPECT_EQ(c->durability(), v1::DURABILITY_FSYNC);
  // A duration replaces the default whole: 0.5s, not 600.5s.
  EXPECT_EQ(c->idle_tenant_timeout().seconds(), 0);
  EXPECT_EQ(c->idle_tenant_timeout().nanos(), 500000000);
  EXPECT_EQ(c->max_messages(), 16);
  // Everything else keeps its default.
  EXPECT_EQ(c->grpc_listen(), "0.0.0.0:50051");
  EXPECT_EQ(c->storage_failure_policy(), v1::STORAGE_FAILURE_POLICY_FAIL_CLOSED);
  EXPECT_EQ(c->plans_size(), 2);
  EXPECT_EQ(c->models_size(), static_cast<int>(DefaultModels().size()));
  EXPECT_OK(ValidateConfig(*c));
}

TEST(LoadConfigFileTest, JsonOverridesWhatItSetsInEitherSpelling) {
  TempDir dir;
  const std::string path = WriteFile(dir, "anyai.json", R"json({
    "grpc_listen": "[::1]:6000",
    "dataDir": "/var/lib/anyai",
    "storage_failure_policy": "STORAGE_FAILURE_POLICY_FAIL_OPEN",
    "http_read_timeout": "2.5s",
    "imagine": {"default_model": "pluto"}
  })json");
  absl::StatusOr<v1::ServerConfig> c = LoadConfigFile(path);
  ASSERT_OK(c);
  EXPECT_EQ(c->grpc_listen(), "[::1]:6000");
  EXPECT_EQ(c->data_dir(), "/var/lib/anyai");
  EXPECT_EQ(c->storage_failure_policy(), v1::STORAGE_FAILURE_POLICY_FAIL_OPEN);
  EXPECT_EQ(c->http_read_timeout().seconds(), 2);
  EXPECT_EQ(c->http_read_timeout().nanos(), 500000000);
  // An endpoint merges field by field: the models list stays, the default changes.
  EXPECT_THAT(c->imagine().models(), ElementsAre("sdxl", "pluto", "dall-e-2", "dall-e-3"));
  EXPECT_EQ(c->imagine().default_model(), "pluto");
  EXPECT_EQ(c->imagine().provider(), "builtin");
  EXPECT_EQ(c->http_listen(), "0.0.0.0:8080");
  EXPECT_OK(ValidateConfig(*c));
}

TEST(LoadConfigFileTest, ReportsUnreadableFilesAndUnknownFormats) {
  EXPECT_THAT(LoadConfigFile("/nonexistent/anyai.textproto"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/anyai.textproto")));
  TempDir dir;
  const std::string path = WriteFile(dir, "anyai.yaml", "grpc_listen: x\n");
  EXPECT_THAT(LoadConfigFile(path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown format")));
}

TEST(LoadConfigFileTest, UnknownTextprotoFieldNamesTheFieldAndLine) {
  TempDir dir;
  const std::string path =
      WriteFile(dir, "bad.textproto", "http_listen: \"0.0.0.0:8080\"\n\ngrpc_lisen: \"x:1\"\n");
  EXPECT_THAT(LoadConfigFile(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("bad.textproto:3:"), HasSubstr("grpc_lisen"))));
}

TEST(LoadConfigFileTest, UnknownNestedTextprotoFieldNamesTheFieldAndLine) {
  EXPECT_THAT(ParseConfig("plans {\n  name: \"free\"\n  clases {}\n}\n", ConfigFormat::kTextproto,
                          "anyai.textproto"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("anyai.textproto:3:"), HasSubstr("\"clases\""))));
}

TEST(LoadConfigFileTest, UnknownJsonFieldNamesTheFieldItsPathAndLine) {
  TempDir dir;
  const std::string path = WriteFile(dir, "bad.json", R"json({
  "plans": [
    {"name": "free",
     "classes": [{"feature_class": "llm", "windowz": []}]}
  ]
})json");
  EXPECT_THAT(LoadConfigFile(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("bad.json:4:"), HasSubstr("\"windowz\""),
                             HasSubstr("plans[0].classes[0]"))));
}

TEST(LoadConfigFileTest, BadValuesInAFileNameTheField) {
  EXPECT_THAT(ParseConfig("durability: DURABILITY_SOMETIMES\n", ConfigFormat::kTextproto, "f"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("durability")));
  EXPECT_THAT(ParseConfig(R"({"plans": [{"classes": [{"windows": [{"max_requests": "ten"}]}]}]})",
                          ConfigFormat::kJson, "f.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("plans[0].classes[0].windows[0].max_requests")));
  EXPECT_THAT(ParseConfig("max_messages: \"many\"", ConfigFormat::kTextproto, "f"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_messages")));
}

// --- Merge semantics of repeated fields ---

TEST(MergeTest, PlansInTheFileReplaceTheDefaults) {
  const v1::ServerConfig c = FromText(R"pb(
    plans {
      name: "gold"
      max_message_chars: 9000
      classes {
        feature_class: "llm"
        windows {
          length { seconds: 2 }
          max_requests: 5
        }
      }
    }
  )pb");
  ASSERT_EQ(c.plans_size(), 1);
  EXPECT_EQ(c.plans(0).name(), "gold");
}

TEST(MergeTest, ChangingOneCellMeansRestatingThePlans) {
  const v1::ServerConfig c = FromText(PlansWithFreeLlmPerMinute(11));
  ASSERT_OK(ValidateConfig(c));
  absl::StatusOr<quota::PlanTable> plans = PlanTableFromConfig(c);
  ASSERT_OK(plans);
  quota::PlanTable expected = DefaultPlansWithReserve();
  expected.plans[0].classes[0].windows[0].limit = 11;
  EXPECT_EQ(*plans, expected);
}

TEST(MergeTest, ModelsInTheFileReplaceTheCatalogueAndGetTheirClass) {
  const v1::ServerConfig c = FromText(R"pb(
    models { id: "gpt-4o" owned_by: "openai" }
    models { id: "my-llama" owned_by: "me" provider: "builtin" }
  )pb");
  ASSERT_EQ(c.models_size(), 2);
  EXPECT_EQ(c.models(0).feature_class(), "closed_llm");
  EXPECT_EQ(c.models(1).feature_class(), "llm");
  ASSERT_OK(ValidateConfig(c));
  absl::StatusOr<Catalogue> catalogue = CatalogueFromConfig(c);
  ASSERT_OK(catalogue);
  EXPECT_EQ(catalogue->size(), 2u);
  ASSERT_NE(catalogue->Find("gpt-4o"), nullptr);
  EXPECT_EQ(catalogue->Find("gpt-4o")->provider, "builtin");
  EXPECT_EQ(catalogue->Find("claude-3-haiku-20240307"), nullptr);
}

TEST(MergeTest, DefaultChatProviderRoutesEveryModelThatNamesNone) {
  const v1::ServerConfig c = FromText(R"pb(
    providers { name: "up" type: PROVIDER_TYPE_OPENAI base_url: "https://upstream.example/v1" }
    default_chat_provider: "up"
  )pb");
  ASSERT_OK(ValidateConfig(c));
  EXPECT_EQ(c.providers(0).timeout().seconds(), 60) << "the documented default is written out";
  absl::StatusOr<Catalogue> catalogue = CatalogueFromConfig(c);
  ASSERT_OK(catalogue);
  EXPECT_EQ(catalogue->size(), DefaultModels().size());
  for (const ModelInfo& m : catalogue->models()) EXPECT_EQ(m.provider, "up") << m.id;
}

TEST(MergeTest, EndpointModelsReplaceTheListAndDefaultToItsFirst) {
  v1::ServerConfig c = FromText(R"pb(imagine { models: "flux" models: "sdxl" })pb");
  EXPECT_THAT(c.imagine().models(), ElementsAre("flux", "sdxl"));
  EXPECT_EQ(c.imagine().default_model(), "flux");
  EXPECT_EQ(c.imagine().provider(), "builtin");
  EXPECT_OK(ValidateConfig(c));
  const EndpointModels models = EndpointModelsFromConfig(c.imagine(), DefaultImagineModels());
  EXPECT_THAT(models.models, ElementsAre("flux", "sdxl"));
  EXPECT_EQ(models.default_model, "flux");

  c = FromText(R"pb(imagine { models: "flux" default_model: "sdxl" })pb");
  EXPECT_THAT(ValidateConfig(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("imagine.default_model: \"sdxl\" is not in")));
}

TEST(MergeTest, EndpointModelsFromConfigFallsBackFieldByField) {
  v1::EndpointConfig endpoint;
  EXPECT_EQ(EndpointModelsFromConfig(endpoint, DefaultVisionModels()).default_model,
            "gemini-pro-vision");
  endpoint.add_models("gpt-4o");
  endpoint.add_models("my-vision");
  EXPECT_EQ(EndpointModelsFromConfig(endpoint, DefaultVisionModels()).default_model, "gpt-4o");
  endpoint.set_default_model("my-vision");
  EXPECT_EQ(EndpointModelsFromConfig(endpoint, DefaultVisionModels()).default_model, "my-vision");
  EXPECT_EQ(EndpointProvider(endpoint), "builtin");
}

TEST(MergeTest, ListsOfStringsReplaceToo) {
  const v1::ServerConfig c = FromText(R"pb(
    trusted_proxies: "10.0.0.0/8" trusted_proxies: "::1"
  )pb");
  EXPECT_THAT(c.trusted_proxies(), ElementsAre("10.0.0.0/8", "::1"));
  EXPECT_OK(ValidateConfig(c));
}

// --- Validation: each bad setting names its field ---

TEST(ValidateConfigTest, RefusesALimitBelowOne) {
  for (int64_t bad : {int64_t{0}, int64_t{-5}}) {
    EXPECT_THAT(
        ValidateText(PlansWithFreeLlmPerMinute(bad)),
        StatusIs(absl::StatusCode::kInvalidArgument,
                 StartsWith("plans: plan \"free\", class \"llm\", window 1m: max_requests ")));
  }
}

TEST(ValidateConfigTest, RefusesAZeroOrMissingWindow) {
  EXPECT_THAT(ValidateText(R"pb(
                plans {
                  name: "x"
                  classes {
                    feature_class: "llm"
                    windows {
                      length {}
                      max_requests: 1
                    }
                  }
                }
              )pb"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("plans: plan \"x\", class \"llm\", window 0: a window must be "
                                  "at least 1s")));
  EXPECT_THAT(ValidateText(R"pb(
                plans {
                  name: "x"
                  classes {
                    feature_class: "llm"
                    windows { max_requests: 1 }
                  }
                }
              )pb"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("plans[0].classes[0].windows[0].length: required")));
  EXPECT_THAT(ValidateText(R"pb(plans {
                                  name: "x"
                                  classes { feature_class: "llm" }
                                })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("plans: plan \"x\", class \"llm\": no windows")));
}

TEST(ValidateConfigTest, RefusesBadPlanFields) {
  EXPECT_THAT(ValidateText("plans { classes {} }"),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("plans[0].name: required")));
  EXPECT_THAT(ValidateText("plans { name: \"a\" max_message_chars: -1 }"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("plans: plan \"a\": max_message_chars is negative")));
  EXPECT_THAT(
      ValidateText(R"pb(
        plans {
          name: "a"
          classes {
            feature_class: "llm"
            windows {
              length { seconds: 60 }
              max_requests: 1
            }
          }
        }
        plans {
          name: "a"
          classes {
            feature_class: "llm"
            windows {
              length { seconds: 60 }
              max_requests: 1
            }
          }
        }
      )pb"),
      StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("plans: plan \"a\": defined twice")));
}

TEST(ValidateConfigTest, PrefixesTheEnginesOwnPlanChecksWithPlans) {
  // premium does not meter "meta": a rule across plans, which quota::ValidatePlanTable checks.
  v1::ServerConfig c = DefaultConfig();
  c.mutable_plans(1)->mutable_classes()->RemoveLast();
  EXPECT_THAT(ValidateConfig(c),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("plans: "), HasSubstr("\"premium\""), HasSubstr("meta"))));
  EXPECT_THAT(PlanTableFromConfig(c),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("plans: ")));
}

TEST(ValidateConfigTest, RefusesPlansThatDoNotMeterAClassInUse) {
  v1::ServerConfig c = DefaultConfig();
  for (v1::PlanConfig& plan : *c.mutable_plans()) plan.mutable_classes()->RemoveLast();  // meta
  EXPECT_THAT(ValidateConfig(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                          AllOf(StartsWith("plans[0].classes: no class \"meta\""),
                                                HasSubstr("/v1/models"))));
}

TEST(ValidateConfigTest, RefusesBadListenAddresses) {
  for (const char* bad : {"localhost", "0.0.0.0:", ":8080", "0.0.0.0:70000", "0.0.0.0:-1",
                          "::1:8080", "[::1:8080", "[nope]:8080", "300.1.1.1:80", "a b:80"}) {
    v1::ServerConfig c = DefaultConfig();
    c.set_grpc_listen(bad);
    EXPECT_THAT(ValidateConfig(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                            StartsWith("grpc_listen: \"" + std::string(bad))))
        << bad;
  }
  for (const char* good : {"127.0.0.1:0", "[::]:8081", "localhost:1", "my-host.internal:65535"}) {
    v1::ServerConfig c = DefaultConfig();
    c.set_http_listen(good);
    EXPECT_OK(ValidateConfig(c)) << good;
  }
}

TEST(ValidateConfigTest, ImageUrlsNeedAPositiveLifetimeASizeAndAPlainBaseUrl) {
  EXPECT_EQ(DefaultConfig().image_url_ttl().seconds(), 3600);
  EXPECT_EQ(DefaultConfig().image_store_max_bytes(), int64_t{256} << 20);
  v1::ServerConfig c = DefaultConfig();
  c.mutable_image_url_ttl()->set_seconds(0);
  EXPECT_THAT(ValidateConfig(c),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("image_url_ttl")));
  c = DefaultConfig();
  c.set_image_store_max_bytes(-1);
  EXPECT_THAT(ValidateConfig(c),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("image_store_max_bytes")));
  for (const char* bad : {"api.example.com", "ftp://api.example.com", "https://api.example.com/",
                          "https://api.example.com?x=1", "https://api.example.com#top"}) {
    c = DefaultConfig();
    c.set_public_base_url(bad);
    EXPECT_THAT(ValidateConfig(c),
                StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("public_base_url")))
        << bad;
  }
  for (const char* good : {"https://api.example.com", "http://10.0.0.1:8080/anyai"}) {
    c = DefaultConfig();
    c.set_public_base_url(good);
    EXPECT_OK(ValidateConfig(c)) << good;
  }
}

TEST(CatalogueFromConfigTest, ModelAliasesReachTheCatalogue) {
  v1::ServerConfig c = DefaultConfig();
  v1::ModelAlias* alias = c.add_model_aliases();
  alias->set_alias("opus");
  alias->set_model("claude-3-opus-20240229");
  absl::StatusOr<Catalogue> catalogue = CatalogueFromConfig(c);
  ASSERT_OK(catalogue);
  EXPECT_EQ(catalogue->Resolve("opus")->id, "claude-3-opus-20240229");
  alias->set_model("claude-17");
  EXPECT_THAT(CatalogueFromConfig(c),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("model_aliases[0].model")));
}

TEST(ValidateConfigTest, RefusesGrpcAndHttpOnOnePort) {
  v1::ServerConfig c = DefaultConfig();
  c.set_http_listen("127.0.0.1:50051");
  EXPECT_THAT(ValidateConfig(c),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("http_listen: port 50051")));
  c.set_grpc_listen("127.0.0.1:0");
  c.set_http_listen("127.0.0.1:0");
  EXPECT_OK(ValidateConfig(c)) << "port 0 picks two different free ports";
}

TEST(ValidateConfigTest, RefusesBadCidrs) {
  v1::ServerConfig c = DefaultConfig();
  c.add_trusted_proxies("10.0.0.0/8");
  c.add_trusted_proxies("10.0.0.0/33");
  EXPECT_THAT(ValidateConfig(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                          StartsWith("trusted_proxies[1]: \"10.0.0.0/33\"")));
  for (const char* bad : {"10.0.0/8", "fe80::/129", "example.com/8", "10.0.0.0/", "/8"}) {
    c.set_trusted_proxies(1, bad);
    EXPECT_THAT(ValidateConfig(c),
                StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("trusted_proxies[1]")))
        << bad;
  }
  c.set_trusted_proxies(1, "fd00::/8");
  EXPECT_OK(ValidateConfig(c));
}

TEST(ValidateConfigTest, RefusesBadSsrfAllowListEntries) {
  v1::ServerConfig c = DefaultConfig();
  c.add_ssrf_allowlist("images.internal");
  c.add_ssrf_allowlist("192.168.0.0/16");
  EXPECT_OK(ValidateConfig(c));
  c.add_ssrf_allowlist("http://images.internal/");
  EXPECT_THAT(ValidateConfig(c),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("ssrf_allowlist[2]")));
}

TEST(ValidateConfigTest, RefusesProviderReferencesThatDoNotResolve) {
  EXPECT_THAT(ValidateText(R"pb(models { id: "m" provider: "upstream" })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("models[0].provider: \"upstream\" is not a provider (known: "
                                  "builtin)")));
  EXPECT_THAT(ValidateText(R"pb(default_chat_provider: "nope")pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("default_chat_provider")));
  EXPECT_THAT(ValidateText(R"pb(vision { provider: "nope" })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("vision.provider")));
}

TEST(ValidateConfigTest, RefusesBadProviders) {
  EXPECT_THAT(ValidateText(R"pb(providers { name: "builtin" type: PROVIDER_TYPE_BUILTIN })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("providers[0].name: \"builtin\" is predefined")));
  EXPECT_THAT(
      ValidateText(R"pb(providers { name: "up" })pb"),
      StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("providers[0].type: required")));
  EXPECT_THAT(ValidateText(R"pb(providers { name: "up" type: PROVIDER_TYPE_OPENAI })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("providers[0].base_url")));
  EXPECT_THAT(
      ValidateText(
          R"pb(providers { name: "up" type: PROVIDER_TYPE_OPENAI base_url: "ftp://x/v1" })pb"),
      StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("providers[0].base_url")));
  EXPECT_THAT(ValidateText(R"pb(providers {
                                  name: "up"
                                  type: PROVIDER_TYPE_OPENAI
                                  base_url: "https://x/v1"
                                  timeout { seconds: -1 }
                                })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("providers[0].timeout")));
  EXPECT_THAT(
      ValidateText(
          R"pb(providers { name: "stub" type: PROVIDER_TYPE_BUILTIN base_url: "https://x/v1" })pb"),
      StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("providers[0].base_url")));
}

TEST(ValidateConfigTest, RefusesModelsWithoutAMeteredClassOrWithDuplicateIds) {
  EXPECT_THAT(ValidateText(R"pb(models { id: "m" feature_class: "gold_llm" })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("models[0].feature_class: \"gold_llm\" is not a class")));
  EXPECT_THAT(ValidateText(R"pb(models { id: "m" }
                                models { id: "m" })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("models[1].id: \"m\" is listed twice")));
}

TEST(ValidateConfigTest, RefusesAnUnknownAnonymousPlan) {
  EXPECT_THAT(ValidateText(R"pb(anonymous_plan: "gold")pb"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("anonymous_plan: \"gold\" is not a plan (free, premium)")));
}

TEST(ValidateConfigTest, RefusesAModelForAsk) {
  EXPECT_THAT(ValidateText(R"pb(ask { models: "x" })pb"),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("ask.models")));
}

TEST(ValidateConfigTest, RefusesUnknownEnumValues) {
  absl::StatusOr<v1::ServerConfig> c =
      ParseConfig(R"({"durability": 7})", ConfigFormat::kJson, "f.json");
  ASSERT_OK(c);
  EXPECT_THAT(ValidateConfig(*c), StatusIs(absl::StatusCode::kInvalidArgument,
                                           StartsWith("durability: unknown value 7")));
}

TEST(ValidateConfigTest, RefusesNonPositiveTimeoutsAndSizes) {
  EXPECT_THAT(ValidateText("http_read_timeout { seconds: 0 }"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("http_read_timeout: must be positive")));
  EXPECT_THAT(ValidateText("idle_tenant_timeout { seconds: -3 }"),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("idle_tenant_timeout")));
  EXPECT_THAT(
      ValidateText("http_idle_timeout { seconds: 1 nanos: -1 }"),
      StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("http_idle_timeout: not a valid")));
  EXPECT_OK(ValidateText("key_cache_ttl { seconds: 0 }"));
  EXPECT_THAT(ValidateText("max_body_bytes: -1"),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("max_body_bytes")));
  EXPECT_THAT(ValidateText("max_messages: -1"),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("max_messages")));
}

TEST(ValidateConfigTest, HandoffFlushIntervalIsPositiveAndAtMostAnHour) {
  EXPECT_OK(ValidateText("handoff_flush_interval { nanos: 100000000 }"));
  EXPECT_OK(ValidateText("handoff_flush_interval { seconds: 3600 }"));
  EXPECT_THAT(ValidateText("handoff_flush_interval { seconds: 0 }"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("handoff_flush_interval: must be positive")));
  EXPECT_THAT(ValidateText("handoff_flush_interval { seconds: -1 }"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("handoff_flush_interval: must be positive")));
  EXPECT_THAT(ValidateText("handoff_flush_interval { seconds: 3600 nanos: 1 }"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("handoff_flush_interval: must be at most 1h")));
}

TEST(ValidateConfigTest, KeyCacheTtlIsBetweenZeroAndAnHour) {
  EXPECT_OK(ValidateText("key_cache_ttl { seconds: 0 }"));
  EXPECT_OK(ValidateText("key_cache_ttl { nanos: 250000000 }"));
  EXPECT_OK(ValidateText("key_cache_ttl { seconds: 3600 }"));
  EXPECT_THAT(ValidateText("key_cache_ttl { seconds: -1 }"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("key_cache_ttl: must be at least 0")));
  EXPECT_THAT(ValidateText("key_cache_ttl { seconds: 3600 nanos: 1 }"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("key_cache_ttl: must be at most 1h")));
  EXPECT_OK(ValidateText("key_cache_capacity: 0"));
  EXPECT_OK(ValidateText("key_cache_capacity: 5"));
  EXPECT_THAT(ValidateText("key_cache_capacity: -1"),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("key_cache_capacity")));
}

// --- Tokens, spend, concurrency ---

// One plan with every new field set: what the round trips below carry.
constexpr char kMeteredPlan[] = R"pb(
  plans {
    name: "gold"
    max_message_chars: 100
    default_token_reserve: 300
    classes {
      feature_class: "llm"
      windows {
        length { seconds: 60 }
        max_requests: 10
      }
      token_windows {
        length { seconds: 60 }
        max_tokens: 20000
      }
      token_windows {
        length { seconds: 86400 }
        max_tokens: 1000000
      }
      spend_windows {
        length { seconds: 86400 }
        max_micro_usd: 1000000
      }
      spend_windows {
        length { seconds: 2678400 }
        max_micro_usd: 20000000
      }
      max_concurrent: 3
    }
    classes {
      feature_class: "meta"
      windows {
        length { seconds: 60 }
        max_requests: 600
      }
    }
  }
  anonymous_plan: "gold"
  models { id: "my-llama" owned_by: "me" }
  image_generation { models: "img" provider: "builtin" }
)pb";

// kMeteredPlan as the engine should get it.
quota::PlanTable MeteredPlanTable() {
  quota::ClassLimits llm{
      .feature_class = "llm",
      .windows = {{absl::Minutes(1), 10}},
      .token_windows = {{absl::Minutes(1), 20000}, {absl::Hours(24), 1000000}},
      .spend_windows = {{absl::Hours(24), 1000000}, {absl::Hours(24 * 31), 20000000}},
      .max_concurrent = 3};
  quota::ClassLimits meta{.feature_class = "meta", .windows = {{absl::Minutes(1), 600}}};
  return quota::PlanTable{.plans = {quota::Plan{.name = "gold",
                                                .max_message_chars = 100,
                                                .default_token_reserve = 300,
                                                .classes = {llm, meta}}}};
}

// kMeteredPlan with the classes image_generation, imagine, globalask and vision (which every
// config must meter) copied from llm's request window, so that ValidateConfig passes.
std::string MeteredConfigText() {
  v1::ServerConfig c = FromText(kMeteredPlan);
  for (const char* name : {"image_generation", "imagine", "globalask", "vision"}) {
    v1::FeatureClassLimits* limits = c.mutable_plans(0)->add_classes();
    limits->set_feature_class(name);
    *limits->add_windows() = c.plans(0).classes(0).windows(0);
  }
  std::string text;
  google::protobuf::TextFormat::PrintToString(c, &text);
  return text;
}

TEST(TokenLimitsTest, EveryNewPlanFieldReachesTheEngine) {
  const v1::ServerConfig c = FromText(kMeteredPlan);
  absl::StatusOr<quota::PlanTable> plans = PlanTableFromConfig(c);
  ASSERT_OK(plans);
  EXPECT_EQ(*plans, MeteredPlanTable());
  EXPECT_OK(ValidateConfig(FromText(MeteredConfigText())));
}

TEST(TokenLimitsTest, PlansRoundTripThroughTheConfig) {
  const quota::PlanTable table = MeteredPlanTable();
  v1::ServerConfig c;
  *c.mutable_plans() = PlansToConfig(table);
  EXPECT_EQ(c.plans(0).classes(0).token_windows(1).max_tokens(), 1000000);
  EXPECT_EQ(c.plans(0).classes(0).spend_windows(1).length().seconds(), 2678400);
  EXPECT_EQ(c.plans(0).classes(0).max_concurrent(), 3);
  EXPECT_EQ(c.plans(0).default_token_reserve(), 300);
  absl::StatusOr<quota::PlanTable> back = PlanTableFromConfig(c);
  ASSERT_OK(back);
  EXPECT_EQ(*back, table);
}

TEST(TokenLimitsTest, ThePrintedConfigCarriesEveryNewField) {
  v1::ServerConfig c = FromText(MeteredConfigText());
  c.set_charge_upstream_failures(true);
  c.mutable_models(0)->set_input_usd_per_million_tokens(0.15);
  c.mutable_models(0)->set_output_usd_per_million_tokens(0.6);
  const std::string text = RedactedConfigText(c);
  EXPECT_THAT(text, AllOf(HasSubstr("token_windows"), HasSubstr("spend_windows"),
                          HasSubstr("max_micro_usd: 20000000"), HasSubstr("max_concurrent: 3"),
                          HasSubstr("default_token_reserve: 300"),
                          HasSubstr("input_usd_per_million_tokens: 0.15"),
                          HasSubstr("charge_upstream_failures: true")));
  absl::StatusOr<v1::ServerConfig> again = ParseConfig(text, ConfigFormat::kTextproto, "printed");
  ASSERT_OK(again);
  EXPECT_TRUE(MessageDifferencer::Equals(*again, c));
}

TEST(TokenLimitsTest, JsonTakesTheNewFieldsInEitherSpelling) {
  absl::StatusOr<v1::ServerConfig> c = ParseConfig(R"json({
    "plans": [{"name": "gold", "defaultTokenReserve": 64, "classes": [
      {"feature_class": "llm", "windows": [{"length": "60s", "max_requests": 5}],
       "tokenWindows": [{"length": "60s", "maxTokens": 900}],
       "spend_windows": [{"length": "3600s", "max_micro_usd": "2500000"}],
       "maxConcurrent": 2}]}],
    "models": [{"id": "gpt-4o", "inputUsdPerMillionTokens": 2.5,
                "output_usd_per_million_tokens": 10}],
    "chargeUpstreamFailures": true
  })json",
                                                   ConfigFormat::kJson, "f.json");
  ASSERT_OK(c);
  const v1::FeatureClassLimits& llm = c->plans(0).classes(0);
  EXPECT_EQ(c->plans(0).default_token_reserve(), 64);
  EXPECT_EQ(llm.token_windows(0).max_tokens(), 900);
  EXPECT_EQ(llm.spend_windows(0).max_micro_usd(), 2500000);
  EXPECT_EQ(llm.max_concurrent(), 2);
  EXPECT_TRUE(c->charge_upstream_failures());
  absl::StatusOr<Catalogue> catalogue = CatalogueFromConfig(*c);
  ASSERT_OK(catalogue);
  EXPECT_EQ(catalogue->Find("gpt-4o")->input_micro_usd_per_million_tokens, 2500000);
  EXPECT_EQ(catalogue->Find("gpt-4o")->output_micro_usd_per_million_tokens, 10000000);
}

TEST(TokenLimitsTest, AnUnsetReserveIs1024AndChargeUpstreamFailuresIsOff) {
  v1::ServerConfig c = FromText(MeteredConfigText());
  EXPECT_FALSE(c.charge_upstream_failures());
  c.mutable_plans(0)->set_default_token_reserve(0);
  absl::StatusOr<quota::PlanTable> plans = PlanTableFromConfig(c);
  ASSERT_OK(plans);
  EXPECT_EQ(plans->plans[0].default_token_reserve, 1024);
  // Merged over the defaults, the derived default is written out.
  c = FromText(R"pb(
    plans {
      name: "free"
      classes {
        feature_class: "llm"
        windows {
          length { seconds: 60 }
          max_requests: 1
        }
      }
    }
  )pb");
  EXPECT_EQ(c.plans(0).default_token_reserve(), 1024);
  EXPECT_TRUE(FromText("charge_upstream_failures: true").charge_upstream_failures());
}

// ValidateConfig of MeteredConfigText() with `edit` applied to its one plan.
absl::Status ValidateMeteredWith(void (*edit)(v1::PlanConfig&)) {
  v1::ServerConfig c = FromText(MeteredConfigText());
  edit(*c.mutable_plans(0));
  return ValidateConfig(c);
}

TEST(TokenLimitsTest, EachBadFieldIsNamedByItsPath) {
  struct Case {
    void (*edit)(v1::PlanConfig&);
    const char* message;
  };
  const Case cases[] = {
      {[](v1::PlanConfig& p) { p.mutable_classes(0)->mutable_token_windows(0)->set_max_tokens(0); },
       "plans[0].classes[0].token_windows[0].max_tokens: 0 is outside [1, 1125899906842624]"},
      {[](v1::PlanConfig& p) {
         p.mutable_classes(0)->mutable_token_windows(1)->set_max_tokens(quota::kMaxCostPerWindow +
                                                                        1);
       },
       "plans[0].classes[0].token_windows[1].max_tokens: 1125899906842625 is outside"},
      {[](v1::PlanConfig& p) { p.mutable_classes(0)->mutable_token_windows(1)->clear_length(); },
       "plans[0].classes[0].token_windows[1].length: required"},
      {[](v1::PlanConfig& p) {
         p.mutable_classes(0)->mutable_token_windows(0)->mutable_length()->set_nanos(-1);
       },
       "plans[0].classes[0].token_windows[0].length: not a valid google.protobuf.Duration"},
      {[](v1::PlanConfig& p) {
         p.mutable_classes(0)->mutable_spend_windows(1)->set_max_micro_usd(-1);
       },
       "plans[0].classes[0].spend_windows[1].max_micro_usd: -1 is outside [1, 1125899906842624]"},
      {[](v1::PlanConfig& p) { p.mutable_classes(0)->mutable_spend_windows(0)->clear_length(); },
       "plans[0].classes[0].spend_windows[0].length: required"},
      {[](v1::PlanConfig& p) { p.mutable_classes(0)->set_max_concurrent(-1); },
       "plans[0].classes[0].max_concurrent: -1 is outside [0, 1048576] (0: no limit)"},
      {[](v1::PlanConfig& p) {
         p.mutable_classes(1)->set_max_concurrent(quota::kMaxConcurrent + 1);
       },
       "plans[0].classes[1].max_concurrent: 1048577 is outside [0, 1048576]"},
      {[](v1::PlanConfig& p) { p.set_default_token_reserve(-5); },
       "plans[0].default_token_reserve: -5 is outside [0, 1125899906842624] (0: 1024)"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ValidateMeteredWith(c.edit),
                StatusIs(absl::StatusCode::kInvalidArgument, StartsWith(c.message)))
        << c.message;
  }
}

TEST(TokenLimitsTest, RulesAcrossWindowsAreTheEnginesPrefixedWithPlans) {
  // Longer than 31 days.
  EXPECT_THAT(
      ValidateMeteredWith([](v1::PlanConfig& p) {
        p.mutable_classes(0)->mutable_spend_windows(1)->mutable_length()->set_seconds(2678400 +
                                                                                      86400);
      }),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(StartsWith("plans: plan \"gold\", class \"llm\""), HasSubstr("31 days"))));
  // Two token windows of one length.
  EXPECT_THAT(
      ValidateMeteredWith([](v1::PlanConfig& p) {
        *p.mutable_classes(0)->mutable_token_windows(1)->mutable_length() =
            p.classes(0).token_windows(0).length();
      }),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(StartsWith("plans: plan \"gold\", class \"llm\""), HasSubstr("twice"))));
  // Not a multiple of the shortest token window.
  EXPECT_THAT(
      ValidateMeteredWith([](v1::PlanConfig& p) {
        p.mutable_classes(0)->mutable_token_windows(1)->mutable_length()->set_seconds(90);
      }),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(StartsWith("plans: plan \"gold\", class \"llm\""), HasSubstr("multiple"))));
}

TEST(PricesTest, AreWholeMicroUsdPerMillionTokensRoundedToTheNearest) {
  v1::ServerConfig c = FromText(R"pb(
    models {
      id: "gpt-4o-mini"
      input_usd_per_million_tokens: 0.15
      output_usd_per_million_tokens: 0.6
    }
    models {
      id: "claude-3-opus-20240229"
      input_usd_per_million_tokens: 15
      output_usd_per_million_tokens: 75
    }
    models { id: "tiny" input_usd_per_million_tokens: 0.0000006 }
    models { id: "my-llama" }
  )pb");
  ASSERT_OK(ValidateConfig(c));
  absl::StatusOr<Catalogue> catalogue = CatalogueFromConfig(c);
  ASSERT_OK(catalogue);
  const ModelInfo& mini = *catalogue->Find("gpt-4o-mini");
  EXPECT_EQ(mini.input_micro_usd_per_million_tokens, 150000);
  EXPECT_EQ(mini.output_micro_usd_per_million_tokens, 600000);
  const ModelInfo& opus = *catalogue->Find("claude-3-opus-20240229");
  EXPECT_EQ(opus.input_micro_usd_per_million_tokens, 15000000);
  EXPECT_EQ(opus.output_micro_usd_per_million_tokens, 75000000);
  EXPECT_EQ(catalogue->Find("tiny")->input_micro_usd_per_million_tokens, 1);
  EXPECT_EQ(catalogue->Find("my-llama")->input_micro_usd_per_million_tokens, 0);
  EXPECT_EQ(catalogue->Find("my-llama")->output_micro_usd_per_million_tokens, 0);
  // 1000 prompt and 500 completion tokens of opus: 0.015 + 0.0375 USD.
  EXPECT_EQ(PriceMicroUsd(opus, 1000, 500), 52500);
}

TEST(PricesTest, EachBadPriceIsNamedByItsPath) {
  struct Case {
    double usd;
    const char* problem;
  };
  for (const Case& bad : {Case{-0.5, "-0.5 is outside [0, 1000000] USD per million tokens"},
                          Case{1e6 + 1, "1000001 is outside [0, 1000000]"},
                          Case{std::numeric_limits<double>::quiet_NaN(), "finite"},
                          Case{std::numeric_limits<double>::infinity(), "finite"},
                          Case{0.0000004, "4e-07 is below the resolution"}}) {
    for (bool output : {false, true}) {
      v1::ServerConfig c = DefaultConfig();
      v1::ModelConfig* m = c.mutable_models(3);
      output ? m->set_output_usd_per_million_tokens(bad.usd)
             : m->set_input_usd_per_million_tokens(bad.usd);
      const std::string field =
          absl::StrCat("models[3].", output ? "output" : "input", "_usd_per_million_tokens: ");
      EXPECT_THAT(ValidateConfig(c), StatusIs(absl::StatusCode::kInvalidArgument,
                                              AllOf(StartsWith(field), HasSubstr(bad.problem))))
          << bad.usd;
      EXPECT_THAT(CatalogueFromConfig(c),
                  StatusIs(absl::StatusCode::kInvalidArgument, StartsWith(field)))
          << bad.usd;
    }
  }
  v1::ServerConfig c = DefaultConfig();
  c.mutable_models(3)->set_input_usd_per_million_tokens(1e6);
  EXPECT_OK(ValidateConfig(c)) << "$1 per token is the most";
}

// --- Flags and environment ---

TEST(OverrideTest, FlagsWinOverTheFile) {
  v1::ServerConfig c = FromText(R"pb(
    grpc_listen: "127.0.0.1:1111"
    http_listen: "127.0.0.1:2222"
    data_dir: "from-file"
  )pb");
  FlagOverrides flags;
  flags.grpc_listen = "127.0.0.1:0";
  flags.data_dir = "from-flag";
  ASSERT_OK(ApplyFlagOverrides(c, flags));
  EXPECT_EQ(c.grpc_listen(), "127.0.0.1:0");
  EXPECT_EQ(c.http_listen(), "127.0.0.1:2222") << "absent flag: the file's value stays";
  EXPECT_EQ(c.data_dir(), "from-flag");
}

TEST(OverrideTest, ClusterFlagsSetTheDsnAndTheFlushInterval) {
  v1::ServerConfig c = DefaultConfig();
  FlagOverrides flags;
  flags.postgres_dsn = "host=db dbname=anyai";
  flags.handoff_flush_interval = "250ms";
  ASSERT_OK(ApplyFlagOverrides(c, flags));
  EXPECT_EQ(c.postgres_dsn(), "host=db dbname=anyai");
  EXPECT_EQ(c.handoff_flush_interval().seconds(), 0);
  EXPECT_EQ(c.handoff_flush_interval().nanos(), 250000000);

  flags = FlagOverrides();
  flags.postgres_dsn = "host=other";
  flags.handoff_flush_interval = "soon";
  EXPECT_THAT(ApplyFlagOverrides(c, flags),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("--handoff_flush_interval")));
  EXPECT_EQ(c.postgres_dsn(), "host=db dbname=anyai") << "a bad flag changes nothing";
}

TEST(OverrideTest, ABadFlagIsNamedAndChangesNothing) {
  v1::ServerConfig c = DefaultConfig();
  FlagOverrides flags;
  flags.data_dir = "elsewhere";
  flags.http_listen = "8080";
  EXPECT_THAT(ApplyFlagOverrides(c, flags),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("--http_listen: \"8080\"")));
  EXPECT_EQ(c.data_dir(), "data");
  flags = FlagOverrides();
  flags.data_dir = "";
  EXPECT_THAT(ApplyFlagOverrides(c, flags),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("--data_dir")));
}

TEST(OverrideTest, TheEnvironmentsAdminTokenWinsOverTheFile) {
  v1::ServerConfig c = FromText(R"pb(admin_token: "from-file")pb");
  {
    ScopedEnv env(kAdminTokenEnv, nullptr);
    ApplyEnvironment(c);
    EXPECT_EQ(c.admin_token(), "from-file");
  }
  {
    ScopedEnv env(kAdminTokenEnv, "");
    ApplyEnvironment(c);
    EXPECT_EQ(c.admin_token(), "from-file") << "an empty variable counts as unset";
  }
  {
    ScopedEnv env(kAdminTokenEnv, "from-env");
    ApplyEnvironment(c);
    EXPECT_EQ(c.admin_token(), "from-env");
  }
}

TEST(OverrideTest, LoadServerConfigAppliesFileThenFlagsThenEnvironmentThenValidates) {
  TempDir dir;
  const std::string path = WriteFile(dir, "anyai.txtpb", R"pb(
    grpc_listen: "127.0.0.1:1111"
    http_listen: "127.0.0.1:2222"
    admin_token: "from-file"
  )pb");
  ScopedEnv env(kAdminTokenEnv, "from-env");
  FlagOverrides flags;
  flags.http_listen = "127.0.0.1:0";
  absl::StatusOr<v1::ServerConfig> c = LoadServerConfig(path, flags);
  ASSERT_OK(c);
  EXPECT_EQ(c->grpc_listen(), "127.0.0.1:1111");
  EXPECT_EQ(c->http_listen(), "127.0.0.1:0");
  EXPECT_EQ(c->admin_token(), "from-env");

  flags.http_listen = "127.0.0.1:1111";
  EXPECT_THAT(LoadServerConfig(path, flags),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("http_listen: port 1111")));

  absl::StatusOr<v1::ServerConfig> defaults = LoadServerConfig("", FlagOverrides());
  ASSERT_OK(defaults);
  EXPECT_EQ(defaults->admin_token(), "from-env");
}

// --- Secrets ---

TEST(SecretsTest, NeverAppearInErrorsOrTheRedactedText) {
  v1::ServerConfig c = FromText(R"pb(
    admin_token: "admin-s3cret"
    postgres_dsn: "host=db password=pg-s3cret"
    providers {
      name: "up"
      type: PROVIDER_TYPE_OPENAI
      base_url: "https://upstream.example/v1"
      api_key: "sk-s3cret"
    }
  )pb");
  ASSERT_OK(ValidateConfig(c));
  const std::string text = RedactedConfigText(c);
  EXPECT_THAT(text, AllOf(Not(HasSubstr("s3cret")), HasSubstr("<redacted>"),
                          HasSubstr("upstream.example")));
  c.set_grpc_listen("nope");
  absl::Status bad = ValidateConfig(c);
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument, Not(HasSubstr("s3cret"))));
}

// --- The example files under deploy/config/ ---

TEST(ExampleConfigTest, TheDocumentedTextprotoIsExactlyTheDefaults) {
  absl::StatusOr<v1::ServerConfig> c =
      LoadConfigFile(ANYAI_SOURCE_DIR "/deploy/config/anyai.textproto");
  ASSERT_OK(c);
  EXPECT_OK(ValidateConfig(*c));
  std::string diff;
  MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  EXPECT_TRUE(differencer.Compare(DefaultConfig(), *c)) << diff;
}

// deploy/config/token-limits.textproto: the seed's request limits and catalogue, plus tokens,
// spend, concurrency and prices. Fails when the file is broken or drifts from the seed.
TEST(ExampleConfigTest, TheTokenLimitsExampleIsTheSeedPlusTokensSpendConcurrencyAndPrices) {
  absl::StatusOr<v1::ServerConfig> c =
      LoadConfigFile(ANYAI_SOURCE_DIR "/deploy/config/token-limits.textproto");
  ASSERT_OK(c);
  ASSERT_OK(ValidateConfig(*c));
  absl::StatusOr<quota::PlanTable> plans = PlanTableFromConfig(*c);
  ASSERT_OK(plans);
  const quota::PlanTable seed = quota::DefaultPlanTable();
  ASSERT_EQ(plans->plans.size(), seed.plans.size());
  for (size_t i = 0; i < seed.plans.size(); ++i) {
    const quota::Plan& plan = plans->plans[i];
    EXPECT_EQ(plan.name, seed.plans[i].name);
    EXPECT_EQ(plan.max_message_chars, seed.plans[i].max_message_chars);
    EXPECT_GT(plan.default_token_reserve, 0);
    EXPECT_NE(plan.default_token_reserve, 1024) << plan.name << ": the file sets its own";
    ASSERT_EQ(plan.classes.size(), seed.plans[i].classes.size()) << plan.name;
    for (size_t j = 0; j < plan.classes.size(); ++j) {
      const quota::ClassLimits& limits = plan.classes[j];
      const std::string where = absl::StrCat(plan.name, " ", limits.feature_class);
      EXPECT_EQ(limits.feature_class, seed.plans[i].classes[j].feature_class) << where;
      EXPECT_EQ(limits.windows, seed.plans[i].classes[j].windows) << where << ": the seed's";
      EXPECT_GT(limits.max_concurrent, 0) << where;
      const bool chat =
          limits.feature_class == quota::kLlm || limits.feature_class == quota::kClosedLlm;
      EXPECT_EQ(limits.token_windows.empty(), !chat) << where;
      EXPECT_EQ(limits.spend_windows.empty(), limits.feature_class != quota::kClosedLlm) << where;
    }
  }
  // The figures the file's comments promise.
  const quota::ClassLimits& free_llm = *plans->Find("free")->Find(quota::kLlm);
  EXPECT_THAT(free_llm.token_windows, ElementsAre(quota::Window{absl::Minutes(1), 20000},
                                                  quota::Window{absl::Hours(24), 1000000}));
  EXPECT_EQ(plans->Find("free")->Find(quota::kClosedLlm)->spend_windows[0],
            (quota::Window{absl::Hours(24), 1000000}));
  EXPECT_EQ(plans->Find("premium")->Find(quota::kClosedLlm)->spend_windows[0],
            (quota::Window{absl::Hours(24), 10000000}));

  absl::StatusOr<Catalogue> catalogue = CatalogueFromConfig(*c);
  ASSERT_OK(catalogue);
  const std::vector<ModelInfo> defaults = DefaultModels();
  ASSERT_EQ(catalogue->size(), defaults.size());
  for (size_t i = 0; i < defaults.size(); ++i) {
    ModelInfo m = catalogue->models()[i];
    const bool priced = m.input_micro_usd_per_million_tokens > 0;
    EXPECT_EQ(priced, m.output_micro_usd_per_million_tokens > 0) << m.id;
    EXPECT_EQ(priced, m.feature_class == quota::kClosedLlm && m.id != "sparkdesk") << m.id;
    m.input_micro_usd_per_million_tokens = 0;
    m.output_micro_usd_per_million_tokens = 0;
    EXPECT_EQ(m, defaults[i]) << "the seed's catalogue row, verbatim";
  }
  EXPECT_EQ(catalogue->Find("gpt-4o")->input_micro_usd_per_million_tokens, 2500000);
  EXPECT_EQ(catalogue->Find("gpt-4o")->output_micro_usd_per_million_tokens, 10000000);
  EXPECT_EQ(catalogue->Find("gpt-4o-mini")->input_micro_usd_per_million_tokens, 150000);
  EXPECT_EQ(catalogue->Find("gemini-1.5-flash")->input_micro_usd_per_million_tokens, 75000);

  // Everything else is the default.
  v1::ServerConfig rest = *c;
  v1::ServerConfig defaults_rest = DefaultConfig();
  for (v1::ServerConfig* x : {&rest, &defaults_rest}) {
    x->clear_plans();
    x->clear_models();
  }
  EXPECT_TRUE(MessageDifferencer::Equals(rest, defaults_rest));
}

TEST(ExampleConfigTest, TheJsonUpstreamExampleLoadsAndValidates) {
  absl::StatusOr<v1::ServerConfig> c =
      LoadConfigFile(ANYAI_SOURCE_DIR "/deploy/config/openai-upstream.json");
  ASSERT_OK(c);
  EXPECT_OK(ValidateConfig(*c));
  absl::StatusOr<Catalogue> catalogue = CatalogueFromConfig(*c);
  ASSERT_OK(catalogue);
  ASSERT_NE(catalogue->Find("gpt-4o"), nullptr);
  EXPECT_EQ(catalogue->Find("gpt-4o")->provider, "upstream");
  EXPECT_EQ(catalogue->Find("gpt-4o")->feature_class, "closed_llm");
  ASSERT_NE(catalogue->Find("llama-3-8b-chat"), nullptr);
  EXPECT_EQ(catalogue->Find("llama-3-8b-chat")->provider, "builtin");
  EXPECT_EQ(EndpointProvider(c->image_generation()), "upstream");
}

}  // namespace
}  // namespace anyai::server
