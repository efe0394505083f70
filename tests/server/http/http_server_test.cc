// server/http/http_server.cc, the transport alone: an HttpServer with test routes on a loopback
// port and a raw-socket client. Keep-alive and pipelining, HTTP/1.0, 100-continue, the size
// limits (413, 431), malformed requests (400), slow and idle clients (408, close), handlers
// that block, stream, forget to answer or throw, a client that vanishes mid-stream, and the
// graceful shutdown; a handler answered on the I/O thread, on a worker, or started on the I/O
// thread and handed to a worker (ContinueOnWorker) answers the same bytes. Latches, not
// sleeps, decide what is in flight.
#include "server/http/http_server.h"

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/server/http/http_test_client.h"

namespace anyai::server {
namespace {

using ::anyai::testing::Events;
using ::anyai::testing::Fetch;
using ::anyai::testing::HttpConnection;
using ::anyai::testing::HttpReply;
using ::anyai::testing::Request;
using ::testing::HasSubstr;

HttpResponse Text(std::string body) {
  return HttpResponse{
      .status = 200, .headers = {{"content-type", "text/plain"}}, .body = std::move(body)};
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto add = [&](const char* method, const char* path, HttpHandler handler,
                   HttpRouter::Dispatch dispatch = HttpRouter::Dispatch::kWorker) {
      ASSERT_TRUE(router_.Add(method, path, std::move(handler), dispatch).ok());
    };
    add("GET", "/hello", [](HttpExchange& e) { e.Respond(Text("hello")); });
    add("POST", "/echo", [](HttpExchange& e) { e.Respond(Text(e.request().body)); });
    add("GET", "/whoami", [](HttpExchange& e) {
      const HttpRequest& r = e.request();
      e.Respond(
          Text(r.peer + " " + r.query + " " + std::string(r.Header("x-twice").value_or("-"))));
    });
    add("GET", "/block", [this](HttpExchange& e) {
      blocked_.Notify();
      release_.WaitForNotificationWithTimeout(absl::Seconds(20));
      e.Respond(Text("unblocked"));
    });
    add("GET", "/stream", [](HttpExchange& e) {
      if (!e.StartStream(Text(""))) return;
      for (int i = 0; i < 5; ++i) {
        if (!e.WriteChunk(absl::StrCat("data: ", i, "\n\n"))) return;
      }
      e.EndStream();
    });
    add("GET", "/gated", [this](HttpExchange& e) {
      if (!e.StartStream(Text(""))) return;
      e.WriteChunk("first;");
      release_.WaitForNotificationWithTimeout(absl::Seconds(20));
      e.WriteChunk("second;");
      e.EndStream();
    });
    add("GET", "/endless", [this](HttpExchange& e) {
      if (!e.StartStream(Text(""))) return;
      const std::string kilobyte(1024, 'x');
      int64_t written = 0;
      while (e.WriteChunk(kilobyte)) ++written;
      endless_written_ = written;
      absl::MutexLock lock(&mu_);
      ++endless_stopped_;
    });
    add("GET", "/forget", [](HttpExchange&) {});
    add("GET", "/throw", [](HttpExchange&) -> void { throw std::runtime_error("boom"); });
    add(
        "GET", "/inline",
        [](HttpExchange& e) {
          const bool streamed = e.StartStream(Text(""));
          e.Respond(Text(streamed ? "streamed" : "inline"));
        },
        HttpRouter::Dispatch::kInline);
    // One answer from the three places a handler may run: a worker, the I/O thread, and a
    // worker after a start on the I/O thread. Each says where it ran in a header, which the
    // comparison leaves out.
    const auto answer = [](HttpExchange& e) {
      HttpResponse r = Text(e.request().body);
      r.status = e.request().Header("x-status").has_value() ? 404 : 201;
      r.headers.emplace_back("x-ran-on", e.OnIoThread() ? "io" : "worker");
      r.headers.emplace_back("x-answer", "42");
      e.Respond(std::move(r));
    };
    add("POST", "/same/worker", answer);
    add("POST", "/same/inline", answer, HttpRouter::Dispatch::kInline);
    add(
        "POST", "/same/handed",
        [answer](HttpExchange& e) {
          if (!e.OnIoThread()) return e.Respond(Text("not started on the I/O thread"));
          e.ContinueOnWorker(answer);
        },
        HttpRouter::Dispatch::kInline);
    // An answer larger than the socket's buffers, which the first send cannot take whole.
    const auto big = [](HttpExchange& e) { e.Respond(Text(std::string(8 << 20, 'b'))); };
    add("GET", "/big/worker", big);
    add("GET", "/big/inline", big, HttpRouter::Dispatch::kInline);
    // Header lines a handler got wrong, whole and streamed: one with a CR, one with an LF in its
    // value, one with an LF in its name, one the transport owns, and a good one after them.
    const auto broken = [] {
      HttpResponse r = Text("body");
      r.headers.emplace_back("x-cr", "a\rInjected-Cr: 1");
      r.headers.emplace_back("x-lf", "a\nInjected-Lf: 1");
      r.headers.emplace_back("x-name\nInjected-Name", "1");
      r.headers.emplace_back("content-length", "1");
      r.headers.emplace_back("x-good", "fine");
      return r;
    };
    add("GET", "/broken-headers", [broken](HttpExchange& e) { e.Respond(broken()); });
    add("GET", "/broken-headers/stream", [broken](HttpExchange& e) {
      if (!e.StartStream(broken())) return;
      e.WriteChunk("body");
      e.EndStream();
    });
    add(
        "GET", "/nobody",
        [](HttpExchange& e) { e.Respond(HttpResponse{.status = 204, .headers = {}, .body = ""}); },
        HttpRouter::Dispatch::kInline);
    // Handed to a worker: it may block there, and stream.
    add(
        "GET", "/handed/block",
        [this](HttpExchange& e) {
          e.ContinueOnWorker([this](HttpExchange& x) {
            blocked_.Notify();
            release_.WaitForNotificationWithTimeout(absl::Seconds(20));
            x.Respond(Text("unblocked"));
          });
        },
        HttpRouter::Dispatch::kInline);
    add(
        "GET", "/handed/stream",
        [](HttpExchange& e) {
          e.ContinueOnWorker([](HttpExchange& x) {
            if (!x.StartStream(Text(""))) return;
            for (int i = 0; i < 3; ++i) x.WriteChunk(absl::StrCat("chunk ", i, ";"));
            x.EndStream();
          });
        },
        HttpRouter::Dispatch::kInline);
    add(
        "GET", "/handed/forget", [](HttpExchange& e) { e.ContinueOnWorker([](HttpExchange&) {}); },
        HttpRouter::Dispatch::kInline);
  }

  void Start(HttpServerOptions options = {}) {
    options.listen = "127.0.0.1:0";
    options.on_response = [this](std::string_view route, std::string_view method, int status,
                                 absl::Duration) {
      absl::MutexLock lock(&mu_);
      responses_.push_back(absl::StrCat(std::string(method), " ", std::string(route), " ", status));
    };
    absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(options, router_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  int port() const { return server_->port(); }

  // True once `n` /endless handlers have stopped writing, within `timeout`.
  bool AwaitEndlessStopped(int n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto stopped = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return endless_stopped_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&stopped), timeout);
  }

  std::vector<std::string> Responses() {
    absl::MutexLock lock(&mu_);
    return responses_;
  }

  HttpRouter router_;
  absl::Notification blocked_;
  absl::Notification release_;
  std::atomic<int64_t> endless_written_{0};
  absl::Mutex mu_;
  int endless_stopped_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> responses_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, ReportsTheAddressItBound) {
  Start();
  EXPECT_GT(port(), 0);
  EXPECT_EQ(server_->address(), absl::StrCat("127.0.0.1:", port()));
}

TEST_F(HttpServerTest, RefusesAnAddressInUse) {
  Start();
  HttpServerOptions options;
  options.listen = server_->address();
  absl::StatusOr<std::unique_ptr<HttpServer>> second = HttpServer::Start(options, router_);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr("http_listen"));
}

TEST_F(HttpServerTest, KeepsAConnectionAliveAcrossRequests) {
  Start();
  HttpConnection c(port());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.Send(Request("POST", "/echo", absl::StrCat("body ", i))));
    std::optional<HttpReply> r = c.Read();
    ASSERT_TRUE(r.has_value()) << i;
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, absl::StrCat("body ", i));
    EXPECT_NE(r->Header("connection"), "close");
  }
  ASSERT_TRUE(c.Send(Request("GET", "/stream")));  // a chunked answer keeps it alive too
  ASSERT_TRUE(c.Read().has_value());
  ASSERT_TRUE(c.Send(Request("GET", "/hello")));
  std::optional<HttpReply> r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "hello");
}

TEST_F(HttpServerTest, AnswersPipelinedRequestsInOrder) {
  Start();
  HttpConnection c(port());
  ASSERT_TRUE(c.Send(Request("POST", "/echo", "one") + Request("GET", "/hello") +
                     Request("POST", "/echo", "three")));
  for (const char* expected : {"one", "hello", "three"}) {
    std::optional<HttpReply> r = c.Read();
    ASSERT_TRUE(r.has_value()) << expected;
    EXPECT_EQ(r->body, expected);
  }
}

TEST_F(HttpServerTest, GivesHandlersThePeerQueryAndJoinedHeaders) {
  Start();
  HttpReply r = Fetch(port(), "GET", "/whoami?a=1&b=2", "", {{"X-Twice", "a"}, {"x-twice", "b"}});
  EXPECT_EQ(r.body, "127.0.0.1 a=1&b=2 a, b");
}

// Past a handful of fields the repeated names are found through an index: a name repeated
// before and after that point is still one header, joined in order; and a head of thousands of
// tiny distinct fields (within max_header_bytes) is answered.
TEST_F(HttpServerTest, JoinsRepeatedHeadersAmongManyFields) {
  Start();
  std::vector<std::pair<std::string, std::string>> headers = {{"X-Twice", "a"}};
  for (int i = 0; i < 40; ++i) headers.emplace_back(absl::StrCat("x-f", i), "v");
  headers.emplace_back("x-twice", "b");
  headers.emplace_back("X-TWICE", "c");
  HttpReply r = Fetch(port(), "GET", "/whoami", "", headers);
  EXPECT_EQ(r.body, "127.0.0.1  a, b, c");

  std::string many = "GET /hello HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 1800; ++i) absl::StrAppend(&many, "a", i, ":\r\n");
  absl::StrAppend(&many, "\r\n");
  ASSERT_LT(many.size(), 16u << 10);
  HttpConnection c(port());
  ASSERT_TRUE(c.Send(many));
  std::optional<HttpReply> reply = c.Read();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 200);
}

TEST_F(HttpServerTest, ClosesWhenTheClientAsks) {
  Start();
  HttpConnection c(port());
  ASSERT_TRUE(c.Send(Request("GET", "/hello", "", {{"Connection", "close"}})));
  std::optional<HttpReply> r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->Header("connection"), "close");
  EXPECT_TRUE(c.WaitForClose(absl::Seconds(5)));
}

TEST_F(HttpServerTest, SpeaksHttp10) {
  Start();
  {
    HttpConnection c(port());
    ASSERT_TRUE(c.Send("GET /hello HTTP/1.0\r\n\r\n"));
    std::optional<HttpReply> r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->version, "HTTP/1.0");
    EXPECT_EQ(r->body, "hello");
    EXPECT_TRUE(c.WaitForClose(absl::Seconds(5)));
  }
  {  // a stream without chunked encoding: the body ends with the connection
    HttpConnection c(port());
    ASSERT_TRUE(c.Send("GET /stream HTTP/1.0\r\n\r\n"));
    std::optional<HttpReply> r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_FALSE(r->chunked);
    EXPECT_EQ(Events(r->body).size(), 5u);
  }
}

TEST_F(HttpServerTest, StreamsChunksAsTheHandlerWritesThem) {
  Start();
  HttpConnection c(port());
  ASSERT_TRUE(c.Send(Request("GET", "/gated")));
  // The first chunk arrives while the handler is still waiting to write the second.
  ASSERT_TRUE(c.ReadUntil("first;"));
  release_.Notify();
  std::optional<HttpReply> r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->chunked);
  EXPECT_THAT(r->chunks, ::testing::ElementsAre("first;", "second;"));
}

TEST_F(HttpServerTest, ABlockedHandlerDoesNotStallOtherConnections) {
  HttpServerOptions options;
  options.io_threads = 1;
  options.worker_threads = 2;
  Start(options);
  HttpConnection blocked(port());
  ASSERT_TRUE(blocked.Send(Request("GET", "/block")));
  ASSERT_TRUE(blocked_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Fetch(port(), "GET", "/hello").body, "hello");
  release_.Notify();
  std::optional<HttpReply> r = blocked.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "unblocked");
}

TEST_F(HttpServerTest, RefusesAnOversizeBodyWith413) {
  HttpServerOptions options;
  options.max_body_bytes = 1000;
  Start(options);
  {  // announced: refused before the body is read
    HttpConnection c(port());
    ASSERT_TRUE(c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n"));
    std::optional<HttpReply> r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 413);
    EXPECT_THAT(r->body, HasSubstr("request_too_large"));
    EXPECT_EQ(r->Header("connection"), "close");
    EXPECT_TRUE(c.WaitForClose(absl::Seconds(5)));
  }
  {  // chunked: refused once it grows past the limit
    HttpConnection c(port());
    std::string request = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 3; ++i) request += "190\r\n" + std::string(400, 'a') + "\r\n";
    request += "0\r\n\r\n";
    ASSERT_TRUE(c.Send(request));
    std::optional<HttpReply> r = c.Read();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 413);
  }
  EXPECT_EQ(Fetch(port(), "POST", "/echo", std::string(1000, 'b')).body, std::string(1000, 'b'));
}

TEST_F(HttpServerTest, ReadsAChunkedBody) {
  Start();
  HttpConnection c(port());
  ASSERT_TRUE(
      c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"));
  std::optional<HttpReply> r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "abcdefg");
}

TEST_F(HttpServerTest, RefusesOversizeHeadersWith431) {
  HttpServerOptions options;
  options.max_header_bytes = 2000;
  Start(options);
  HttpConnection c(port());
  ASSERT_TRUE(c.Send(Request("GET", "/hello", "", {{"X-Padding", std::string(3000, 'p')}})));
  std::optional<HttpReply> r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 431);
  EXPECT_THAT(r->body, HasSubstr("request_header_fields_too_large"));
  EXPECT_TRUE(c.WaitForClose(absl::Seconds(5)));
  // A long request line counts too.
  EXPECT_EQ(Fetch(port(), "GET", "/hello?" + std::string(3000, 'q')).status, 431);
}

TEST_F(HttpServerTest, RefusesMalformedRequestsWith400) {
  Start();
  for (const char* bad : {"NONSENSE\r\n\r\n", "GET /hello HTTP/7.0\r\n\r\n",
                          "GET /hello HTTP/1.1\r\nno colon here\r\n\r\n",
                          "GET /hello HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
                          "GET /hello HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                          "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"}) {
    HttpConnection c(port());
    ASSERT_TRUE(c.Send(bad));
    std::optional<HttpReply> r = c.Read();
    ASSERT_TRUE(r.has_value()) << bad;
    EXPECT_EQ(r->status, 400) << bad;
    EXPECT_THAT(r->body, HasSubstr("\"error\"")) << bad;
    EXPECT_TRUE(c.WaitForClose(absl::Seconds(5))) << bad;
  }
}

TEST_F(HttpServerTest, AnswersExpectContinue) {
  Start();
  HttpConnection c(port());
  ASSERT_TRUE(
      c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
             "Content-Length: 5\r\n\r\n"));
  std::optional<HttpReply> interim = c.Read();
  ASSERT_TRUE(interim.has_value());
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(c.Send("hello"));
  std::optional<HttpReply> r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello");
}

TEST_F(HttpServerTest, ASlowClientGets408AndIsDisconnected) {
  HttpServerOptions options;
  options.read_timeout = absl::Milliseconds(300);
  Start(options);
  for (const char* partial : {"GET /hello HTTP/1.1\r\nHost: x\r\n",
                              "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12"}) {
    HttpConnection c(port());
    ASSERT_TRUE(c.Send(partial));
    std::optional<HttpReply> r = c.Read(absl::Seconds(10));
    ASSERT_TRUE(r.has_value()) << partial;
    EXPECT_EQ(r->status, 408) << partial;
    EXPECT_THAT(r->body, HasSubstr("request_timeout"));
    EXPECT_TRUE(c.WaitForClose(absl::Seconds(10)));
  }
  EXPECT_EQ(Fetch(port(), "GET", "/hello").body, "hello");
}

TEST_F(HttpServerTest, AnIdleConnectionIsClosed) {
  HttpServerOptions options;
  options.idle_timeout = absl::Milliseconds(300);
  options.first_byte_timeout = absl::Milliseconds(300);
  Start(options);
  HttpConnection silent(port());  // never sends anything
  HttpConnection kept(port());
  ASSERT_TRUE(kept.Send(Request("GET", "/hello")));
  ASSERT_TRUE(kept.Read().has_value());
  EXPECT_TRUE(silent.WaitForClose(absl::Seconds(10)));
  EXPECT_TRUE(kept.WaitForClose(absl::Seconds(10)));
}

TEST_F(HttpServerTest, AClientThatVanishesStopsTheStream) {
  Start();
  int streams = 0;
  for (bool reset : {false, true}) {
    HttpConnection c(port());
    ASSERT_TRUE(c.Send(Request("GET", "/endless")));
    ASSERT_TRUE(c.ReadUntil("xxxx"));
    c.Close(reset);
    ASSERT_TRUE(AwaitEndlessStopped(++streams, absl::Seconds(20)))
        << "the handler never learnt that its client had gone";
    EXPECT_GT(endless_written_.load(), 0);
    EXPECT_EQ(Fetch(port(), "GET", "/hello").body, "hello");
  }
}

TEST_F(HttpServerTest, AHandlerThatForgetsOrThrowsGets500) {
  Start();
  for (const char* path : {"/forget", "/throw"}) {
    HttpReply r = Fetch(port(), "GET", path);
    EXPECT_EQ(r.status, 500) << path;
    EXPECT_THAT(r.body, HasSubstr("server_error")) << path;
  }
  EXPECT_EQ(Fetch(port(), "GET", "/hello").body, "hello");
}

TEST_F(HttpServerTest, InlineHandlersMayNotStream) {
  Start();
  EXPECT_EQ(Fetch(port(), "GET", "/inline").body, "inline");
}

// Every header but x-ran-on, in order.
::anyai::testing::Headers WithoutRanOn(::anyai::testing::Headers headers) {
  std::erase_if(headers, [](const auto& h) { return h.first == "x-ran-on"; });
  return headers;
}

TEST_F(HttpServerTest, AnAnswerIsTheSameFromTheIoThreadAndFromAWorker) {
  Start();
  struct Case {
    const char* name;
    std::string head_tail;  // after the request line's target
  };
  const std::vector<Case> cases = {
      {"HTTP/1.1 keep-alive", " HTTP/1.1\r\nHost: x\r\n"},
      {"HTTP/1.1 close", " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"},
      {"HTTP/1.1 404", " HTTP/1.1\r\nHost: x\r\nX-Status: 1\r\n"},
      {"HTTP/1.0", " HTTP/1.0\r\n"},
      {"HTTP/1.0 keep-alive", " HTTP/1.0\r\nConnection: keep-alive\r\n"},
  };
  for (const Case& c : cases) {
    std::vector<HttpReply> replies;
    for (const char* where : {"worker", "inline", "handed"}) {
      HttpConnection connection(port());
      ASSERT_TRUE(connection.Send(
          absl::StrCat("POST /same/", where, c.head_tail, "Content-Length: 5\r\n\r\nhello")));
      std::optional<HttpReply> r = connection.Read();
      ASSERT_TRUE(r.has_value()) << c.name << " " << where;
      EXPECT_EQ(r->Header("x-ran-on"), std::string(where) == "inline" ? "io" : "worker")
          << c.name << " " << where;
      replies.push_back(*std::move(r));
    }
    EXPECT_EQ(replies[0].body, "hello") << c.name;
    EXPECT_EQ(replies[0].Header("x-answer"), "42") << c.name;
    for (size_t i = 1; i < replies.size(); ++i) {
      EXPECT_EQ(replies[i].version, replies[0].version) << c.name << " " << i;
      EXPECT_EQ(replies[i].status, replies[0].status) << c.name << " " << i;
      EXPECT_EQ(WithoutRanOn(replies[i].headers), WithoutRanOn(replies[0].headers))
          << c.name << " " << i;
      EXPECT_EQ(replies[i].body, replies[0].body) << c.name << " " << i;
    }
  }
}

TEST_F(HttpServerTest, AnAnswerLargerThanTheSocketBufferArrivesWhole) {
  Start();
  HttpConnection c(port());
  for (const char* path : {"/big/inline", "/big/worker", "/big/inline"}) {
    ASSERT_TRUE(c.Send(Request("GET", path)));
    std::optional<HttpReply> r = c.Read(absl::Seconds(30));
    ASSERT_TRUE(r.has_value()) << path;
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body.size(), size_t{8 << 20}) << path;
    EXPECT_EQ(r->body.find_first_not_of('b'), std::string::npos) << path;
  }
  ASSERT_TRUE(c.Send(Request("GET", "/hello")));  // still in step
  std::optional<HttpReply> r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "hello");
}

TEST_F(HttpServerTest, ANoContentAnswerHasNoContentLength) {
  Start();
  HttpConnection c(port());
  ASSERT_TRUE(c.Send(Request("GET", "/nobody") + Request("GET", "/hello")));
  std::optional<HttpReply> r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 204);
  EXPECT_FALSE(r->HasHeader("content-length"));
  r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "hello");
}

TEST_F(HttpServerTest, AHeaderLineWithACrOrLfIsLeftOutAndTheRestArrive) {
  Start();
  for (const char* path : {"/broken-headers", "/broken-headers/stream"}) {
    HttpConnection c(port());
    ASSERT_TRUE(c.Send(Request("GET", path) + Request("GET", "/hello")));
    std::optional<HttpReply> r = c.Read();
    ASSERT_TRUE(r.has_value()) << path;
    EXPECT_EQ(r->status, 200) << path;
    EXPECT_EQ(r->body, "body") << path;  // not cut to the handler's content-length
    EXPECT_EQ(r->Header("x-good"), "fine") << path;
    for (const char* name : {"x-cr", "x-lf", "injected-cr", "injected-lf", "injected-name"}) {
      EXPECT_FALSE(r->HasHeader(name)) << path << " " << name;
    }
    r = c.Read();  // the head was not broken: the next answer on the connection is whole
    ASSERT_TRUE(r.has_value()) << path;
    EXPECT_EQ(r->body, "hello") << path;
  }
}

TEST_F(HttpServerTest, AHandlerHandedToAWorkerMayBlockWithoutStallingTheIoThread) {
  HttpServerOptions options;
  options.io_threads = 1;
  options.worker_threads = 2;
  Start(options);
  HttpConnection blocked(port());
  ASSERT_TRUE(blocked.Send(Request("GET", "/handed/block")));
  ASSERT_TRUE(blocked_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  // The one I/O thread still reads and answers other connections, inline and on workers.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Fetch(port(), "GET", "/inline").body, "inline");
    EXPECT_EQ(Fetch(port(), "GET", "/hello").body, "hello");
  }
  release_.Notify();
  std::optional<HttpReply> r = blocked.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "unblocked");
}

TEST_F(HttpServerTest, AHandlerHandedToAWorkerMayStreamOrForgetToAnswer) {
  Start();
  HttpConnection c(port());
  ASSERT_TRUE(c.Send(Request("GET", "/handed/stream")));
  std::optional<HttpReply> r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->chunked);
  EXPECT_THAT(r->chunks, ::testing::ElementsAre("chunk 0;", "chunk 1;", "chunk 2;"));
  ASSERT_TRUE(c.Send(Request("GET", "/handed/forget")));
  r = c.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 500);
}

TEST_F(HttpServerTest, UnroutedRequestsAre404Or405) {
  Start();
  HttpReply r = Fetch(port(), "GET", "/v1/nowhere");
  EXPECT_EQ(r.status, 404);
  EXPECT_THAT(r.body, HasSubstr("unknown_url"));
  r = Fetch(port(), "POST", "/v1/hello", "x");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.Header("allow"), "GET");
}

TEST_F(HttpServerTest, ReportsEveryAnswer) {
  Start();
  Fetch(port(), "GET", "/v1/hello");
  Fetch(port(), "GET", "/nowhere");
  Fetch(port(), "GET", "/stream");
  HttpConnection c(port());
  ASSERT_TRUE(c.Send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n"));
  ASSERT_TRUE(c.Read().has_value());
  c.Close();
  server_->Shutdown(absl::Now() + absl::Seconds(5));
  // Method and route are empty for what the transport refused before routing.
  EXPECT_THAT(Responses(), ::testing::UnorderedElementsAre("GET /hello 200", "GET  404",
                                                           "GET /stream 200", "  413"));
}

TEST_F(HttpServerTest, ShutdownFinishesWhatIsInFlight) {
  Start();
  HttpConnection idle(port());
  ASSERT_TRUE(idle.Send(Request("GET", "/hello")));
  ASSERT_TRUE(idle.Read().has_value());
  HttpConnection busy(port());
  ASSERT_TRUE(busy.Send(Request("GET", "/block")));
  ASSERT_TRUE(blocked_.WaitForNotificationWithTimeout(absl::Seconds(10)));

  std::thread stopper([&] { server_->Shutdown(absl::Now() + absl::Seconds(20)); });
  EXPECT_TRUE(idle.WaitForClose(absl::Seconds(10)));  // idle connections go at once
  // A new connection is still accepted while the server drains, and answered 503.
  HttpReply late = Fetch(port(), "GET", "/hello");
  EXPECT_EQ(late.status, 503);
  EXPECT_EQ(late.Header("connection"), "close");
  release_.Notify();
  std::optional<HttpReply> r = busy.Read();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->body, "unblocked");
  EXPECT_EQ(r->Header("connection"), "close");
  busy.Close();
  stopper.join();
}

TEST_F(HttpServerTest, ShutdownCutsWhatOutlivesTheDeadline) {
  HttpServerOptions options;
  options.write_timeout = absl::Seconds(60);
  Start(options);
  HttpConnection c(port());  // reads the head, then nothing: the stream fills the socket
  ASSERT_TRUE(c.Send(Request("GET", "/endless")));
  ASSERT_TRUE(c.ReadUntil("xxxx"));
  const absl::Time start = absl::Now();
  server_->Shutdown(absl::Now() + absl::Milliseconds(200));
  EXPECT_TRUE(AwaitEndlessStopped(1, absl::ZeroDuration()));
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));  // not the write timeout
}

}  // namespace
}  // namespace anyai::server
