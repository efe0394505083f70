// The Gateway against the open internet (issue 12), over real parts (RocksDB in a temp dir, the
// engine, the builtin provider behind the scripted wrapper): anonymous IPv6 clients counted per
// network; failed authentication limited per client address; errors that say what and why but
// never where; nothing billed that the client did not get (deadlines).
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/gateway/error_kind.h"
#include "server/gateway/errors.h"
#include "server/grpc/grpc_status.h"
#include "server/http/http_status.h"
#include "tests/server/gateway/gateway_rig.h"
#include "tests/testing/status_matchers.h"

namespace anyai::server {
namespace {

using ::anyai::testing::IsOk;
using ::anyai::testing::StatusIs;
using ::testing::HasSubstr;

const absl::Time kStart = absl::FromUnixSeconds(1'767'225'600);

// What RocksDB says when the disk is full: a file path, and the tenant the write was for.
constexpr char kRocksDbFailure[] =
    "IO error: No space left on device: While appending to file: "
    "/var/lib/anyai/db/000123.log: tenant key:4f2a9c01e3b7d6a8 (ip:203.0.113.7)";

// The usage store behind switches: writes, loads, or both (`fail`) fail as on a full disk.
class FailingUsage : public quota::UsageSink, public quota::UsageLoader {
 public:
  explicit FailingUsage(storage::UsageStore& store) : store_(store) {}
  bool fail = false;
  bool fail_loads = false;
  absl::Status Record(absl::Span<const quota::Admission> changes) override {
    if (fail) return absl::UnavailableError(kRocksDbFailure);
    return store_.Record(changes);
  }
  absl::StatusOr<std::vector<quota::BucketCount>> Load(std::string_view tenant) override {
    if (fail || fail_loads) return absl::UnavailableError(kRocksDbFailure);
    return store_.Load(tenant);
  }

 private:
  storage::UsageStore& store_;
};

// The key store behind a switch, failing with RocksDB's words and a key record's id.
class FailingKeys : public storage::KeyStore {
 public:
  explicit FailingKeys(storage::KeyStore& keys) : keys_(keys) {}
  bool fail = false;
  absl::StatusOr<storage::CreatedKey> Create(std::string_view plan, std::string_view label,
                                             absl::Time now) override {
    if (fail) return Failure();
    return keys_.Create(plan, label, now);
  }
  absl::StatusOr<storage::KeyRecord> Get(std::string_view key_id) override {
    if (fail) return Failure();
    return keys_.Get(key_id);
  }
  absl::StatusOr<storage::KeyPage> List(int page_size, std::string_view page_token) override {
    if (fail) return Failure();
    return keys_.List(page_size, page_token);
  }
  absl::StatusOr<storage::KeyRecord> Update(std::string_view key_id,
                                            const storage::KeyUpdate& update) override {
    if (fail) return Failure();
    return keys_.Update(key_id, update);
  }
  absl::StatusOr<storage::KeyRecord> Revoke(std::string_view key_id, absl::Time now) override {
    if (fail) return Failure();
    return keys_.Revoke(key_id, now);
  }
  absl::StatusOr<storage::KeyRecord> Lookup(std::string_view key_hash) override {
    if (fail) return Failure();
    return keys_.Lookup(key_hash);
  }

 private:
  static absl::Status Failure() {
    return absl::DataLossError(
        "key record 4f2a9c01e3b7d6a8 does not decode: Corruption: block checksum mismatch in "
        "/var/lib/anyai/db/000042.sst offset 1024");
  }
  storage::KeyStore& keys_;
};

// Where a message must not point: a path, a tenant id or key id, RocksDB, an address or port.
void ExpectSaysNeverWhere(const absl::Status& status, std::string_view what) {
  ASSERT_FALSE(status.ok()) << what;
  const std::string message(status.message());
  SCOPED_TRACE(absl::StrCat(absl::string_view(what.data(), what.size()), ": \"", message, "\""));
  EXPECT_FALSE(message.empty());
  EXPECT_EQ(message.find('/'), std::string::npos);
  EXPECT_EQ(absl::AsciiStrToLower(message).find("rocksdb"), std::string::npos);
  EXPECT_EQ(message.find("key:"), std::string::npos);
  EXPECT_EQ(message.find("ip:"), std::string::npos);
  EXPECT_EQ(message.find("anon:"), std::string::npos);
  EXPECT_FALSE(std::regex_search(message, std::regex("[0-9a-f]{16}")));  // a key id or hash
  EXPECT_FALSE(std::regex_search(message, std::regex("[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+")));
  EXPECT_FALSE(std::regex_search(message, std::regex(":[0-9]{2,5}\\b")));  // a port
  EXPECT_FALSE(std::regex_search(message, std::regex("\\bport [0-9]+")));
  EXPECT_EQ(message.find("000123"), std::string::npos);
}

class GatewayHardeningTest : public ::testing::Test {
 protected:
  void Build(absl::FunctionRef<void(GatewayParts&)> customize = [](GatewayParts&) {}) {
    rig_ = std::make_unique<GatewayRig>(quota::DefaultPlanTable(), kStart);
    rig_->Start([&](GatewayParts& parts) {
      parts.providers = {{"builtin", &provider_}};
      parts.clock = [this] { return now_; };
      customize(parts);
    });
    gateway_ = rig_->gateway.get();
  }

  static v1::ChatCompletionRequest Chat() {
    v1::ChatCompletionRequest r;
    r.set_model("phi-2");  // an llm model
    auto* m = r.add_messages();
    m->set_role("user");
    m->set_content("hello");
    return r;
  }

  static Caller From(std::string_view peer,
                     std::optional<std::string_view> authorization = std::nullopt) {
    return Caller{
        .authorization = authorization, .peer = peer, .forwarded_for = "", .public_base_url = ""};
  }

  // Requests of `feature_class` counted for the anonymous tenant of `ip`, as GetUsage reports.
  int64_t Used(const std::string& ip, std::string_view feature_class = quota::kLlm) {
    v1::GetUsageRequest request;
    request.set_ip(ip);
    absl::StatusOr<v1::GetUsageResponse> usage = gateway_->GetUsage(request);
    EXPECT_THAT(usage, IsOk());
    if (!usage.ok()) return -1;
    for (const v1::ClassUsage& c : usage->classes()) {
      if (c.feature_class() == feature_class) return c.windows(0).used();
    }
    return -1;
  }

  std::string CreateKey() {
    absl::StatusOr<storage::CreatedKey> key = rig_->keys->Create("premium", "t", kStart);
    EXPECT_THAT(key, IsOk());
    return key.ok() ? "Bearer " + key->key : "";
  }

  // Sends `n` requests with an unknown key from `peer`; each must be a 401.
  void FailAuthentication(std::string_view peer, int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_THAT(gateway_->Chat(From(peer, "Bearer sk-anyai-wrong"), Chat()).result,
                  StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_))
          << "failure " << i + 1;
    }
  }

  absl::Time now_ = kStart;
  ScriptedProvider provider_{kStart};
  std::unique_ptr<GatewayRig> rig_;
  Gateway* gateway_ = nullptr;
};

TEST_F(GatewayHardeningTest, TwoAddressesOfOneIpv6Slash64ShareOneAnonymousTenant) {
  Build();
  ASSERT_THAT(gateway_->Chat(From("2001:db8:1:2::1"), Chat()).result, IsOk());
  ASSERT_THAT(gateway_->Chat(From("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), Chat()).result, IsOk());
  EXPECT_EQ(gateway_->Authenticate(From("2001:db8:1:2::1"))->tenant, "ip:2001:db8:1:2::/64");
  EXPECT_EQ(Used("2001:db8:1:2::77"), 2);
  // Another /64 is another tenant.
  EXPECT_EQ(Used("2001:db8:1:3::1"), 0);
  ASSERT_THAT(gateway_->Chat(From("2001:db8:1:3::1"), Chat()).result, IsOk());
  EXPECT_EQ(Used("2001:db8:1:3::1"), 1);
  EXPECT_EQ(Used("2001:db8:1:2::1"), 2);
}

TEST_F(GatewayHardeningTest, AnIpv6NetworkIsRefusedAsOneClient) {
  Build();
  // The free plan's llm class: 10 per minute, whichever addresses of the /64 send them.
  for (int i = 0; i < 10; ++i) {
    const std::string peer = absl::StrCat("2001:db8:1:2::", i + 1);
    ASSERT_THAT(gateway_->Chat(From(peer), Chat()).result, IsOk()) << peer;
  }
  EXPECT_THAT(gateway_->Chat(From("2001:db8:1:2::abcd"), Chat()).result,
              StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
}

TEST_F(GatewayHardeningTest, Prefix128CountsEveryIpv6AddressAlone) {
  Build([](GatewayParts& parts) { parts.anonymous_ipv6_prefix_length = 128; });
  ASSERT_THAT(gateway_->Chat(From("2001:db8:1:2::1"), Chat()).result, IsOk());
  ASSERT_THAT(gateway_->Chat(From("2001:db8:1:2::2"), Chat()).result, IsOk());
  EXPECT_EQ(gateway_->Authenticate(From("2001:db8:1:2::1"))->tenant, "ip:2001:db8:1:2::1");
  EXPECT_EQ(Used("2001:db8:1:2::1"), 1);
  EXPECT_EQ(Used("2001:db8:1:2::2"), 1);
}

TEST_F(GatewayHardeningTest, Ipv4ClientsStayOneTenantPerAddressAndMappedOnesAreIpv4) {
  Build();
  ASSERT_THAT(gateway_->Chat(From("203.0.113.7"), Chat()).result, IsOk());
  ASSERT_THAT(gateway_->Chat(From("::ffff:203.0.113.7"), Chat()).result, IsOk());
  ASSERT_THAT(gateway_->Chat(From("203.0.113.8"), Chat()).result, IsOk());
  EXPECT_EQ(gateway_->Authenticate(From("::ffff:203.0.113.7"))->tenant, "ip:203.0.113.7");
  EXPECT_EQ(Used("203.0.113.7"), 2);
  EXPECT_EQ(Used("203.0.113.8"), 1);
}

TEST_F(GatewayHardeningTest, SixtyWrongKeysInAMinuteThenEveryKeyedRequestIsRefusedWithARetry) {
  Build();
  const std::string valid = CreateKey();
  FailAuthentication("203.0.113.7", 60);
  // The 61st request carrying a key, a valid one included: 429 with a retry.
  for (const std::string& header : {std::string("Bearer sk-anyai-wrong"), valid}) {
    const absl::Status refused =
        gateway_->Chat(From("203.0.113.7", header), Chat()).result.status();
    EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted,
                                  HasSubstr("too many failed authentications from this address; "
                                            "retry in 60s")));
    EXPECT_EQ(ErrorKindOf(refused).http_status, 429);
    std::optional<google::rpc::RetryInfo> retry = GetRetryInfo(refused);
    ASSERT_TRUE(retry.has_value());
    EXPECT_EQ(retry->retry_delay().seconds(), 60);
    std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(refused);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(info->reason(), kTooManyFailedAuthenticationsReason);
  }
  // As the fronts answer it: HTTP 429 with Retry-After, gRPC RESOURCE_EXHAUSTED with RetryInfo.
  const absl::Status refused = gateway_->Chat(From("203.0.113.7", valid), Chat()).result.status();
  const HttpResponse http = ErrorResponse(refused);
  EXPECT_EQ(http.status, 429);
  bool retry_after = false;
  for (const auto& [name, value] : http.headers) {
    if (name == "retry-after") retry_after = value == "60";
  }
  EXPECT_TRUE(retry_after);
  const grpc::Status rpc = ToGrpcStatus(refused);
  EXPECT_EQ(rpc.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  google::rpc::Status details;
  ASSERT_TRUE(details.ParseFromString(rpc.error_details()));
  EXPECT_TRUE(GetRetryInfo(FromRpcStatus(details)).has_value());
  // Anonymous requests from that address and keyed ones from others are served.
  EXPECT_THAT(gateway_->Chat(From("203.0.113.7"), Chat()).result, IsOk());
  EXPECT_THAT(gateway_->Chat(From("203.0.113.8", valid), Chat()).result, IsOk());
  // Once the minute has passed, the valid key works again.
  now_ += absl::Minutes(1);
  EXPECT_THAT(gateway_->Chat(From("203.0.113.7", valid), Chat()).result, IsOk());
}

TEST_F(GatewayHardeningTest, TheWindowSlidesExactly) {
  Build();
  const std::string valid = CreateKey();
  FailAuthentication("203.0.113.7", 30);
  now_ += absl::Seconds(30);
  FailAuthentication("203.0.113.7", 30);
  EXPECT_THAT(gateway_->Chat(From("203.0.113.7", valid), Chat()).result,
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("retry in 30s")));
  // Just before the first 30 leave the minute: still refused; then room for 30 more.
  now_ += absl::Seconds(30) - absl::Nanoseconds(1);
  EXPECT_THAT(gateway_->Chat(From("203.0.113.7", valid), Chat()).result,
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("retry in 1s")));
  now_ += absl::Nanoseconds(1);
  EXPECT_THAT(gateway_->Chat(From("203.0.113.7", valid), Chat()).result, IsOk());
  FailAuthentication("203.0.113.7", 30);
  EXPECT_THAT(gateway_->Chat(From("203.0.113.7", valid), Chat()).result,
              StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
}

TEST_F(GatewayHardeningTest, RevokedMalformedAndCheckedKeysAreFailuresToo) {
  Build();
  const std::string valid = CreateKey();
  const std::string revoked = CreateKey();
  v1::RevokeKeyRequest revoke;
  revoke.set_key_id(gateway_->Authenticate(From("198.51.100.1", revoked))->key->key_id);
  ASSERT_THAT(gateway_->RevokeKey(revoke), IsOk());
  for (int i = 0; i < 20; ++i) {
    ASSERT_THAT(gateway_->Chat(From("203.0.113.7", revoked), Chat()).result,
                StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
    ASSERT_THAT(gateway_->Chat(From("203.0.113.7", "Basic abc"), Chat()).result,
                StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
    // /check?key= is a key oracle as much as the authorization header.
    ASSERT_THAT(gateway_->CheckKey(From("203.0.113.7"), "sk-anyai-guess").result,
                StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
  }
  EXPECT_THAT(gateway_->Chat(From("203.0.113.7", valid), Chat()).result,
              StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
  EXPECT_THAT(gateway_->CheckKey(From("203.0.113.7"), valid.substr(7)).result,
              StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
  // The anonymous caller's own /check is served.
  EXPECT_THAT(gateway_->CheckKey(From("203.0.113.7"), "").result, IsOk());
}

TEST_F(GatewayHardeningTest, RefusedAuthenticationsCountNothingInAnyQuota) {
  Build();
  const std::string valid = CreateKey();
  FailAuthentication("203.0.113.7", 60);
  for (int i = 0; i < 5; ++i) {
    ASSERT_THAT(gateway_->Chat(From("203.0.113.7", valid), Chat()).result,
                StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
  }
  v1::GetUsageRequest request;
  request.set_key(valid.substr(7));
  absl::StatusOr<v1::GetUsageResponse> usage = gateway_->GetUsage(request);
  ASSERT_THAT(usage, IsOk());
  for (const v1::ClassUsage& c : usage->classes()) EXPECT_EQ(c.windows(0).used(), 0);
  EXPECT_EQ(Used("203.0.113.7"), 0);
}

TEST_F(GatewayHardeningTest, FailuresFromOneIpv6NetworkAddUp) {
  Build();
  const std::string valid = CreateKey();
  for (int i = 0; i < 60; ++i) {
    const std::string peer = absl::StrCat("2001:db8:1:2::", i + 1);
    ASSERT_THAT(gateway_->Chat(From(peer, "Bearer sk-anyai-wrong"), Chat()).result,
                StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
  }
  EXPECT_THAT(gateway_->Chat(From("2001:db8:1:2::ffff", valid), Chat()).result,
              StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
  EXPECT_THAT(gateway_->Chat(From("2001:db8:1:3::1", valid), Chat()).result, IsOk());
}

TEST_F(GatewayHardeningTest, TheFailedAuthenticationLimitFollowsTheSetting) {
  Build([](GatewayParts& parts) { parts.max_failed_auth_per_minute = 3; });
  const std::string valid = CreateKey();
  FailAuthentication("203.0.113.7", 3);
  EXPECT_THAT(gateway_->Chat(From("203.0.113.7", valid), Chat()).result,
              StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
  Build([](GatewayParts& parts) { parts.max_failed_auth_per_minute = 0; });  // no limit
  const std::string another = CreateKey();
  FailAuthentication("203.0.113.7", 200);
  EXPECT_THAT(gateway_->Chat(From("203.0.113.7", another), Chat()).result, IsOk());
}

TEST_F(GatewayHardeningTest, StorageFailuresSayWhatAndWhyButNeverWhere) {
  rig_ = std::make_unique<GatewayRig>(quota::DefaultPlanTable(), kStart);
  FailingUsage usage(*rig_->usage);
  FailingKeys keys(*rig_->keys);
  rig_->engine =
      *quota::Engine::Create(quota::DefaultPlanTable(), {.sink = &usage, .loader = &usage});
  rig_->Start([&](GatewayParts& parts) {
    parts.providers = {{"builtin", &provider_}};
    parts.keys = &keys;
    parts.clock = [this] { return now_; };
  });
  gateway_ = rig_->gateway.get();
  const std::string valid = CreateKey();
  v1::RevokeKeyRequest revoke;
  v1::GetKeyRequest get;
  get.set_key_id(gateway_->Authenticate(From("198.51.100.1", valid))->key->key_id);
  revoke.set_key_id(get.key_id());

  usage.fail = true;
  const Outcome<v1::ChatCompletion> chat = gateway_->Chat(From("203.0.113.7"), Chat());
  ExpectSaysNeverWhere(chat.result.status(), "anonymous chat, usage failing");
  EXPECT_EQ(ErrorKindOf(chat.result.status()).http_status, 503);
  EXPECT_THAT(chat.result, StatusIs(absl::StatusCode::kUnavailable,
                                    HasSubstr("storage is unavailable; try again later")));
  ExpectSaysNeverWhere(gateway_->Chat(From("203.0.113.7", valid), Chat()).result.status(),
                       "keyed chat, usage failing");
  ExpectSaysNeverWhere(gateway_->CheckKey(From("203.0.113.9"), "").result.status(),
                       "check, usage failing");
  v1::GetUsageRequest by_ip;
  by_ip.set_ip("203.0.113.7");
  ExpectSaysNeverWhere(gateway_->GetUsage(by_ip).status(), "admin usage, usage failing");
  usage.fail = false;

  keys.fail = true;
  ExpectSaysNeverWhere(gateway_->Chat(From("203.0.113.7", valid), Chat()).result.status(),
                       "keyed chat, keys failing");
  ExpectSaysNeverWhere(gateway_->CheckKey(From("203.0.113.7"), valid.substr(7)).result.status(),
                       "check key, keys failing");
  ExpectSaysNeverWhere(gateway_->GetKey(get).status(), "GetKey");
  ExpectSaysNeverWhere(gateway_->ListKeys(v1::ListKeysRequest()).status(), "ListKeys");
  ExpectSaysNeverWhere(gateway_->RevokeKey(revoke).status(), "RevokeKey");
  v1::UpdateKeyRequest update;
  update.set_key_id(get.key_id());
  update.set_label("x");
  ExpectSaysNeverWhere(gateway_->UpdateKey(update).status(), "UpdateKey");
  v1::CreateKeyRequest create;
  create.set_plan("free");
  ExpectSaysNeverWhere(gateway_->CreateKey(create).status(), "CreateKey");
  v1::GetUsageRequest by_key;
  by_key.set_key(valid.substr(7));
  ExpectSaysNeverWhere(gateway_->GetUsage(by_key).status(), "admin usage by key");
  keys.fail = false;
  // A 401 for a bad key, and a 429, say nothing of where either.
  ExpectSaysNeverWhere(
      gateway_->Chat(From("203.0.113.7", "Bearer sk-anyai-wrong"), Chat()).result.status(),
      "unknown key");
}

TEST_F(GatewayHardeningTest, UpstreamFailuresSayWhatAndWhyButNeverWhere) {
  Build();
  provider_.mode = ScriptedProvider::Mode::kFailBeforeOutput;
  const absl::Status chat = gateway_->Chat(From("203.0.113.7"), Chat()).result.status();
  ExpectSaysNeverWhere(chat, "chat, upstream unreachable");
  EXPECT_THAT(chat, StatusIs(absl::StatusCode::kUnavailable,
                             HasSubstr("the upstream provider is unavailable")));
  EXPECT_EQ(ErrorKindOf(chat).http_status, 502);  // still told from our own storage's 503
  StreamOutcome stream = gateway_->StreamChat(
      From("203.0.113.7"), Chat(), [](const auto&) { return true; },
      [](const v1::ChatCompletionChunk&) { return true; });
  ExpectSaysNeverWhere(stream.status, "stream, upstream unreachable");
  v1::ImagineRequest imagine;
  imagine.set_prompt("a lighthouse");
  const absl::Status timed_out = gateway_->Imagine(From("203.0.113.7"), imagine).result.status();
  ExpectSaysNeverWhere(timed_out, "imagine, upstream timed out");
  EXPECT_THAT(timed_out, StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
}

TEST_F(GatewayHardeningTest, ACallPastItsDeadlineAtAdmissionIsRefusedAndCountsNothing) {
  absl::Time real_now = kStart;
  Build([&](GatewayParts& parts) { parts.deadline_clock = [&real_now] { return real_now; }; });
  Caller late = From("203.0.113.7");
  late.deadline = kStart;  // already reached
  EXPECT_THAT(gateway_->Chat(late, Chat()).result,
              StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  StreamOutcome stream = gateway_->StreamChat(
      late, Chat(), [](const auto&) { return true; },
      [](const v1::ChatCompletionChunk&) { return true; });
  EXPECT_THAT(stream.status, StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  EXPECT_THAT(gateway_->ListModels(late).result,
              StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  // Not even a failed authentication is counted.
  late.authorization = "Bearer sk-anyai-wrong";
  for (int i = 0; i < 100; ++i) {
    ASSERT_THAT(gateway_->Chat(late, Chat()).result,
                StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  }
  EXPECT_EQ(Used("203.0.113.7"), 0);
  EXPECT_EQ(Used("203.0.113.7", quota::kMeta), 0);
  const std::string valid = CreateKey();
  EXPECT_THAT(gateway_->Chat(From("203.0.113.7", valid), Chat()).result, IsOk());
  // A deadline still ahead is served.
  Caller in_time = From("203.0.113.7");
  in_time.deadline = kStart + absl::Seconds(1);
  EXPECT_THAT(gateway_->Chat(in_time, Chat()).result, IsOk());
  EXPECT_EQ(Used("203.0.113.7"), 1);
}

TEST_F(GatewayHardeningTest, ADeadlinePassingWhileTheProviderWorksGivesEverythingBack) {
  absl::Time real_now = kStart;
  Build([&](GatewayParts& parts) { parts.deadline_clock = [&real_now] { return real_now; }; });
  Caller caller = From("203.0.113.7");
  caller.deadline = kStart + absl::Seconds(5);
  provider_.during_call = [&] { real_now += absl::Seconds(10); };  // a slow upstream
  Outcome<v1::ChatCompletion> chat = gateway_->Chat(caller, Chat());
  EXPECT_THAT(chat.result, StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  EXPECT_EQ(Used("203.0.113.7"), 0);
  // A stream that delivered nothing before the deadline: the same.
  caller.deadline = real_now + absl::Seconds(5);
  StreamOutcome stream = gateway_->StreamChat(
      caller, Chat(), [](const auto&) { return true; },
      [&](const v1::ChatCompletionChunk&) { return false; });  // the transport refused it
  EXPECT_THAT(stream.status, StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  EXPECT_EQ(Used("203.0.113.7"), 0);
  // Another endpoint too.
  caller.deadline = real_now + absl::Seconds(5);
  v1::ImagineRequest imagine;
  imagine.set_prompt("a lighthouse");
  EXPECT_THAT(gateway_->Imagine(caller, imagine).result,
              StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  EXPECT_EQ(Used("203.0.113.7", quota::kImagine), 0);
  // With the upstream in time, all is counted as usual.
  provider_.during_call = nullptr;
  caller.deadline = real_now + absl::Seconds(5);
  EXPECT_THAT(gateway_->Chat(caller, Chat()).result, IsOk());
  EXPECT_EQ(Used("203.0.113.7"), 1);
}

TEST_F(GatewayHardeningTest, AStreamPastItsDeadlineBillsWhatItDeliveredBefore) {
  absl::Time real_now = kStart;
  Build([&](GatewayParts& parts) { parts.deadline_clock = [&real_now] { return real_now; }; });
  Caller caller = From("203.0.113.7");
  caller.deadline = kStart + absl::Seconds(5);
  int chunks = 0;
  StreamOutcome stream = gateway_->StreamChat(
      caller, Chat(), [](const auto&) { return true; },
      [&](const v1::ChatCompletionChunk&) {
        if (++chunks == 3) real_now += absl::Seconds(10);  // the deadline passes midway
        return real_now < caller.deadline;
      });
  EXPECT_THAT(stream.status, StatusIs(absl::StatusCode::kDeadlineExceeded, ::testing::_));
  EXPECT_EQ(Used("203.0.113.7"), 1);
}

TEST_F(GatewayHardeningTest, ACheckWhoseReportFailsGivesItsRequestBack) {
  rig_ = std::make_unique<GatewayRig>(quota::DefaultPlanTable(), kStart);
  FailingUsage usage(*rig_->usage);
  rig_->engine =
      *quota::Engine::Create(quota::DefaultPlanTable(), {.sink = &usage, .loader = &usage});
  rig_->Start([&](GatewayParts& parts) {
    parts.providers = {{"builtin", &provider_}};
    parts.clock = [this] { return now_; };
  });
  gateway_ = rig_->gateway.get();
  const std::string valid = CreateKey();
  ASSERT_THAT(gateway_->CheckKey(From("203.0.113.7"), "").result, IsOk());  // resident now
  // The caller's own tenant is resident and counts; the key's tenant cannot be loaded.
  usage.fail_loads = true;
  Outcome<v1::CheckKeyResponse> failed = gateway_->CheckKey(From("203.0.113.7"), valid.substr(7));
  usage.fail_loads = false;
  EXPECT_THAT(failed.result, StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  EXPECT_EQ(Used("203.0.113.7", quota::kMeta), 1);  // the first check only
}

TEST_F(GatewayHardeningTest, TheAdminTokenIsComparedWhateverTheLengthOfTheGuess) {
  Build([](GatewayParts& parts) { parts.admin_token = "admin-3f9a0c1d5e7b"; });
  EXPECT_THAT(gateway_->AuthorizeAdmin("Bearer admin-3f9a0c1d5e7b"), IsOk());
  // Unequal with the same length, shorter, longer, a prefix, the token plus a NUL, empty.
  const std::vector<std::string> guesses = {"admin-3f9a0c1d5e7c",
                                            "admin-3f9a0c1d5e7",
                                            "admin-3f9a0c1d5e7bX",
                                            "admin",
                                            std::string("admin-3f9a0c1d5e7b\0", 19),
                                            "x"};
  for (const std::string& guess : guesses) {
    EXPECT_THAT(gateway_->AuthorizeAdmin("Bearer " + guess),
                StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_))
        << guess;
  }
  EXPECT_THAT(gateway_->AuthorizeAdmin(""),
              StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
}

TEST_F(GatewayHardeningTest, WrongAdminTokensAreFailedAuthenticationsOfTheirAddress) {
  Build([](GatewayParts& parts) { parts.admin_token = "admin-3f9a0c1d5e7b"; });
  for (int i = 0; i < 60; ++i) {
    ASSERT_THAT(gateway_->AuthorizeAdmin("Bearer admin-guess", "127.0.0.1"),
                StatusIs(absl::StatusCode::kUnauthenticated, ::testing::_));
  }
  EXPECT_THAT(
      gateway_->AuthorizeAdmin("Bearer admin-3f9a0c1d5e7b", "127.0.0.1"),
      StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("too many failed authentications")));
  EXPECT_THAT(gateway_->AuthorizeAdmin("Bearer admin-3f9a0c1d5e7b", "::1"), IsOk());
  now_ += absl::Minutes(1);
  EXPECT_THAT(gateway_->AuthorizeAdmin("Bearer admin-3f9a0c1d5e7b", "127.0.0.1"), IsOk());
}

}  // namespace
}  // namespace anyai::server
