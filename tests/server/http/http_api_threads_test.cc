// server/http/http_api.cc's choice of thread, through a whole in-process Server over real
// sockets: a call the Gateway answers without blocking (a builtin chat, /v1/models) is answered
// on the HTTP I/O thread, and answers as the same call on a worker does; a chat routed to an
// upstream that blocks is handed to a worker, so that it does not stall, on the one I/O thread,
// another connection's /healthz, /v1/models or builtin chat; a stream still streams.
#include <memory>
#include <string>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "anyai/v1/config.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/app/server.h"
#include "server/config/config.h"
#include "tests/server/http/http_test_client.h"
#include "tests/server/providers/openai/fake_upstream.h"
#include "tests/testing/temp_dir.h"

namespace anyai::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kBuiltinChat[] =
    R"({"model":"phi-2","messages":[{"role":"user","content":"Say something."}]})";
constexpr char kUpstreamChat[] =
    R"({"model":"gpt-4o","messages":[{"role":"user","content":"Say something."}]})";

class HttpApiThreadsTest : public ::testing::Test {
 protected:
  HttpApiThreadsTest() {
    // libcurl honours proxy variables; the fake upstream must be reached directly.
    for (const char* name : {"http_proxy", "https_proxy", "all_proxy", "ALL_PROXY"}) {
      unsetenv(name);
    }
  }

  static v1::ServerConfig Config(const TempDir& dir, const std::string& data) {
    v1::ServerConfig config = server::DefaultConfig();
    config.set_grpc_listen("127.0.0.1:0");
    config.set_http_listen("127.0.0.1:0");
    config.set_admin_listen("127.0.0.1:0");
    config.set_data_dir(dir.Sub(data));
    return config;
  }

  // A server with one HTTP I/O thread; its key of the premium plan.
  std::unique_ptr<server::Server> Start(const v1::ServerConfig& config, std::string* key) {
    server::ServerOptions options;
    options.clock = [] { return absl::FromUnixSeconds(1'767'225'600); };
    options.http_io_threads = 1;
    options.http_worker_threads = 4;
    absl::StatusOr<std::unique_ptr<server::Server>> server =
        server::Server::Start(config, std::move(options));
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return nullptr;
    v1::CreateKeyRequest request;
    request.set_plan("premium");
    request.set_label("threads test");
    absl::StatusOr<v1::CreateKeyResponse> created = (*server)->gateway().CreateKey(request);
    EXPECT_TRUE(created.ok()) << created.status();
    if (created.ok()) *key = created->key();
    return *std::move(server);
  }

  static Headers Bearer(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }

  TempDir dir_;
};

// The answer without what differs from call to call (the completion's id) or from key to key
// (none of the headers: x-ratelimit-* are the plan's figures).
nlohmann::json Comparable(const HttpReply& r) {
  nlohmann::json body = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_object()) body.erase("id");
  nlohmann::json headers = nlohmann::json::array();
  for (const auto& [name, value] : r.headers) headers.push_back({name, value});
  return {{"status", r.status}, {"version", r.version}, {"headers", headers}, {"body", body}};
}

TEST_F(HttpApiThreadsTest, AChatAnsweredOnTheIoThreadAnswersAsOneOnAWorker) {
  // Admissions that wait for the disk block their thread: with fsync durability the same chat
  // is answered on a worker (Gateway::AnswersWithoutBlocking).
  v1::ServerConfig fsync_config = Config(dir_, "fsync");
  fsync_config.set_durability(v1::DURABILITY_FSYNC);
  std::string inline_key, worker_key;
  std::unique_ptr<server::Server> inline_server = Start(Config(dir_, "default"), &inline_key);
  std::unique_ptr<server::Server> worker_server = Start(fsync_config, &worker_key);
  ASSERT_NE(inline_server, nullptr);
  ASSERT_NE(worker_server, nullptr);
  for (const char* body :
       {kBuiltinChat, R"({"model":"phi-2","messages":[]})", R"({"model":"no-such-model"})"}) {
    const HttpReply on_io =
        Fetch(inline_server->http_port(), "POST", "/v1/chat/completions", body, Bearer(inline_key));
    const HttpReply on_worker =
        Fetch(worker_server->http_port(), "POST", "/v1/chat/completions", body, Bearer(worker_key));
    ASSERT_NE(on_io.status, 0) << body;
    EXPECT_EQ(Comparable(on_io), Comparable(on_worker)) << body;
  }
  const HttpReply models =
      Fetch(inline_server->http_port(), "GET", "/v1/models", "", Bearer(inline_key));
  EXPECT_EQ(Comparable(models), Comparable(Fetch(worker_server->http_port(), "GET", "/v1/models",
                                                 "", Bearer(worker_key))));
  EXPECT_EQ(models.status, 200);
}

TEST_F(HttpApiThreadsTest, AChatThatBlocksOnItsUpstreamDoesNotStallTheIoThread) {
  std::unique_ptr<FakeUpstream> upstream = FakeUpstream::Start();
  absl::Notification release;
  FakeUpstream::Response slow;
  slow.headers = {{"content-type", "application/json"}};
  slow.steps = {FakeUpstream::Step{
      .delay = absl::ZeroDuration(),
      .wait_for = &release,
      .data = R"({"choices":[{"message":{"role":"assistant","content":"at last"}}]})"}};
  upstream->Enqueue(std::move(slow));
  v1::ServerConfig config = Config(dir_, "data");
  v1::ProviderConfig* up = config.add_providers();
  up->set_name("up");
  up->set_type(v1::PROVIDER_TYPE_OPENAI);
  up->set_base_url(upstream->base_url());
  up->mutable_timeout()->set_seconds(30);
  bool routed = false;
  for (v1::ModelConfig& model : *config.mutable_models()) {
    if (model.id() == "gpt-4o") {
      model.set_provider("up");
      routed = true;
    }
  }
  ASSERT_TRUE(routed);
  std::string key;
  std::unique_ptr<server::Server> server = Start(config, &key);
  ASSERT_NE(server, nullptr);

  HttpConnection blocked(server->http_port());
  ASSERT_TRUE(blocked.Send(Request("POST", "/v1/chat/completions", kUpstreamChat, Bearer(key))));
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (upstream->requests().empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(upstream->requests().size(), 1u) << "the chat never reached its upstream";

  // While the upstream holds that chat, the one I/O thread serves everyone else.
  EXPECT_EQ(Fetch(server->http_port(), "GET", "/healthz").status, 200);
  EXPECT_EQ(Fetch(server->http_port(), "GET", "/v1/models", "", Bearer(key)).status, 200);
  const HttpReply builtin =
      Fetch(server->http_port(), "POST", "/v1/chat/completions", kBuiltinChat, Bearer(key));
  EXPECT_EQ(builtin.status, 200);
  EXPECT_THAT(builtin.body, HasSubstr("chat.completion"));
  const HttpReply stream = Fetch(server->http_port(), "POST", "/v1/chat/completions",
                                 R"({"model":"phi-2","stream":true,"messages":[{"role":"user",)"
                                 R"("content":"Say something."}]})",
                                 Bearer(key));
  EXPECT_EQ(stream.status, 200);
  EXPECT_TRUE(stream.chunked);
  EXPECT_THAT(stream.body, HasSubstr("data: [DONE]"));
  EXPECT_EQ(upstream->wait_timeouts(), 0);

  release.Notify();
  std::optional<HttpReply> r = blocked.Read(absl::Seconds(20));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_THAT(r->body, HasSubstr("at last"));
}

}  // namespace
}  // namespace anyai::testing
