// server/http/http_server.cc against an attacker, over real loopback sockets: request
// smuggling (every framing variant of issue 12 is refused with OpenAI's error body, its
// connection closed, and the bytes after its head never reach a handler), bounded connections
// (total and per-address caps, first-byte and header timeouts, slowloris) and the drain at
// shutdown. Handlers count their calls; latches, not sleeps, decide what is in flight.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/http/http_server.h"
#include "tests/server/http/http_test_client.h"

namespace anyai::server {
namespace {

using ::anyai::testing::HttpConnection;
using ::anyai::testing::HttpReply;
using ::anyai::testing::Request;
using ::testing::HasSubstr;

class HttpHardeningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(router_
                    .Add("POST", "/count",
                         [this](HttpExchange& e) {
                           ++count_calls_;
                           e.Respond(HttpResponse{.status = 200, .headers = {}, .body = "counted"});
                         })
                    .ok());
    ASSERT_TRUE(router_
                    .Add("GET", "/smuggled",
                         [this](HttpExchange& e) {
                           ++smuggled_calls_;
                           e.Respond(HttpResponse{.status = 200, .headers = {}, .body = "oops"});
                         })
                    .ok());
    ASSERT_TRUE(router_
                    .Add("GET", "/hello",
                         [](HttpExchange& e) {
                           e.Respond(HttpResponse{.status = 200, .headers = {}, .body = "hello"});
                         })
                    .ok());
  }

  void Start(HttpServerOptions options = {}) {
    options.listen = "127.0.0.1:0";
    absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(options, router_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  int port() const { return server_->port(); }

  // Sends `head` (up to its empty line) followed by a second, smuggled request, and expects
  // one refusal with `status`, an OpenAI error body, and the connection closed.
  void ExpectRefused(const std::string& head, int status, const std::string& body = "") {
    SCOPED_TRACE(head);
    HttpConnection c(port());
    ASSERT_TRUE(c.ok());
    const std::string smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    ASSERT_TRUE(c.Send(head + body + smuggled));
    std::optional<HttpReply> r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, status);
    EXPECT_THAT(r->body, HasSubstr("\"error\""));
    EXPECT_THAT(r->body, HasSubstr("\"type\":\"invalid_request_error\""));
    EXPECT_EQ(r->Header("connection"), "close");
    EXPECT_TRUE(c.WaitForClose(absl::Seconds(5)));
  }

  HttpRouter router_;
  std::atomic<int> count_calls_{0};
  std::atomic<int> smuggled_calls_{0};
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpHardeningTest, AWellFramedRequestStillWorks) {
  Start();
  HttpConnection c(port());
  ASSERT_TRUE(c.Send(
      "POST /count HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
      "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"));
  for (const char* body : {"counted", "oops"}) {  // two real requests, both served
    std::optional<HttpReply> r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->body, body);
  }
  EXPECT_EQ(count_calls_.load(), 1);
  EXPECT_EQ(smuggled_calls_.load(), 1);
}

TEST_F(HttpHardeningTest, RefusesEverySmugglingVariant) {
  Start();
  const std::string post = "POST /count HTTP/1.1\r\nHost: a\r\n";
  // A body a server that ignored the coding would take as the next request's bytes.
  const std::string chunked_body = "5\r\nhello\r\n0\r\n\r\n";
  ExpectRefused(post + "Transfer-Encoding: gzip\r\n\r\n", 400);
  ExpectRefused(post + "Transfer-Encoding: chunked, gzip\r\n\r\n", 400, chunked_body);
  ExpectRefused(post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400,
                chunked_body);
  ExpectRefused(post + "Transfer-Encoding: x-custom\r\n\r\n", 400);
  ExpectRefused(post + "Transfer-Encoding: gzip, chunked\r\n\r\n", 501, chunked_body);
  ExpectRefused(post + "Transfer-Encoding: foo, chunked\r\n\r\n", 501, chunked_body);
  ExpectRefused(post + "Transfer-Encoding: chunked, chunked\r\n\r\n", 400, chunked_body);
  ExpectRefused(post + "Content-Length: 17\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
                chunked_body);
  ExpectRefused(post + "Transfer-Encoding: chunked\r\nContent-Length: 17\r\n\r\n", 400,
                chunked_body);
  ExpectRefused(post + "Transfer-Encoding: gzip\r\nContent-Length: 0\r\n\r\n", 400);
  ExpectRefused(post + "Content-Length: 0\r\nContent-Length: 5\r\n\r\n", 400);
  ExpectRefused("POST /count HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400);  // no Host
  ExpectRefused(post + "Host: b\r\nContent-Length: 0\r\n\r\n", 400);        // two Hosts
  ExpectRefused(post + "Content-Length: 0\r\nX-Folded: a\r\n b\r\n\r\n", 400);
  ExpectRefused(post + "Content-Length: 0\r\nX-Folded: a\r\n\tTransfer-Encoding: chunked\r\n\r\n",
                400);
  ExpectRefused("POST /count HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, chunked_body);
  // Neither the refused request nor the one smuggled behind it reached a handler.
  EXPECT_EQ(count_calls_.load(), 0);
  EXPECT_EQ(smuggled_calls_.load(), 0);
}

TEST_F(HttpHardeningTest, TheRefusalSaysWhy) {
  Start();
  HttpConnection c(port());
  ASSERT_TRUE(c.Send("POST /count HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"));
  std::optional<HttpReply> r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 400);
  EXPECT_THAT(r->body, HasSubstr("final transfer coding is not chunked"));
  EXPECT_THAT(r->body, HasSubstr("\"code\":\"invalid_http_request\""));
  HttpConnection d(port());
  ASSERT_TRUE(
      d.Send("POST /count HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"));
  r = d.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 501);
  EXPECT_THAT(r->body, HasSubstr("\\\"gzip\\\" is not supported"));
}

}  // namespace
}  // namespace anyai::server
