// A GoogleTest fixture that runs a whole gateway in-process (server/app/server.h) with its HTTP
// front on a loopback port, a temp RocksDB and a frozen clock that tests step, as
// grpc_server_test.cc does for gRPC. Tests talk to it over real sockets with
// http_test_client.h. Override Configure() to change the config before the start.
#ifndef ANYAI_TESTS_SERVER_HTTP_HTTP_TEST_SERVER_H_
#define ANYAI_TESTS_SERVER_HTTP_HTTP_TEST_SERVER_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "anyai/v1/config.pb.h"
#include "gtest/gtest.h"
#include "server/app/server.h"
#include "server/config/config.h"
#include "tests/server/http/http_test_client.h"
#include "tests/testing/temp_dir.h"

namespace anyai::testing {

class HttpServerFixture : public ::testing::Test {
 protected:
  void SetUp() override { Start(); }

  virtual void Configure(v1::ServerConfig& /*config*/) {}

  void Start() {
    v1::ServerConfig config = server::DefaultConfig();
    config.set_grpc_listen("127.0.0.1:0");
    config.set_http_listen("127.0.0.1:0");
    config.set_admin_listen("127.0.0.1:0");
    config.set_data_dir(dir_.Sub("data"));
    Configure(config);
    absl::StatusOr<std::unique_ptr<server::Server>> server = server::Server::Start(
        config, {.clock = [this] { return absl::FromUnixMicros(now_us_.load()); }});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  int port() const { return server_->http_port(); }
  void Advance(absl::Duration d) { now_us_ += absl::ToInt64Microseconds(d); }

  // A new API key of `plan`, made in-process (the Admin service is gRPC's business).
  std::string CreateKey(const std::string& plan) {
    v1::CreateKeyRequest request;
    request.set_plan(plan);
    request.set_label("http test");
    absl::StatusOr<v1::CreateKeyResponse> created = server_->gateway().CreateKey(request);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? created->key() : "";
  }

  static Headers Bearer(const std::string& key) { return {{"Authorization", "Bearer " + key}}; }

  HttpReply Get(const std::string& target, const Headers& headers = {}) {
    return Fetch(port(), "GET", target, "", headers);
  }
  HttpReply Post(const std::string& target, const std::string& body, const Headers& headers = {}) {
    return Fetch(port(), "POST", target, body, headers);
  }

  TempDir dir_;
  std::atomic<int64_t> now_us_{absl::ToUnixMicros(absl::FromUnixSeconds(1'767'225'600))};
  std::unique_ptr<server::Server> server_;
};

}  // namespace anyai::testing

#endif  // ANYAI_TESTS_SERVER_HTTP_HTTP_TEST_SERVER_H_
