// server/http/http_framing.cc alone: every RFC 9112 framing rule the transport enforces, on
// parsed heads (CheckFraming), on raw bytes (CheckHeaderBlock) and through Beast's parser
// (CheckRequestBytes), including each request-smuggling variant of issue 12.
#include "server/http/http_framing.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace anyai::server {
namespace {

using ::testing::HasSubstr;

HttpRequestHead Head(std::vector<std::pair<std::string, std::string>> fields, int version = 11) {
  return HttpRequestHead{.version = version, .fields = std::move(fields)};
}

absl::StatusCode Code(const absl::Status& s) { return s.code(); }

TEST(CheckFramingTest, PlainRequestsPass) {
  EXPECT_TRUE(CheckFraming(Head({{"Host", "a"}})).ok());
  EXPECT_TRUE(CheckFraming(Head({{"Host", "a:8080"}, {"Content-Length", "12"}})).ok());
  EXPECT_TRUE(CheckFraming(Head({{"Host", "a"}, {"Transfer-Encoding", "chunked"}})).ok());
  EXPECT_TRUE(CheckFraming(Head({{"Host", "a"}, {"transfer-encoding", "Chunked"}})).ok());
  EXPECT_TRUE(CheckFraming(Head({{"Host", "a"}, {"Transfer-Encoding", " , chunked ,"}})).ok());
  EXPECT_TRUE(CheckFraming(Head({{"Host", ""}})).ok());  // empty authority is allowed
  EXPECT_TRUE(CheckFraming(Head({}, 10)).ok());          // HTTP/1.0 needs no Host
  // The same Content-Length twice is one length.
  EXPECT_TRUE(
      CheckFraming(Head({{"Host", "a"}, {"Content-Length", "5"}, {"Content-Length", "5"}})).ok());
  EXPECT_TRUE(CheckFraming(Head({{"Host", "a"}, {"Content-Length", "5, 5"}})).ok());
}

TEST(CheckFramingTest, FinalCodingNotChunkedIs400) {
  for (const char* te : {"gzip", "chunked, gzip", "identity", "foo", "chunked,foo", "x-gzip"}) {
    const absl::Status s = CheckFraming(Head({{"Host", "a"}, {"Transfer-Encoding", te}}));
    EXPECT_EQ(Code(s), absl::StatusCode::kInvalidArgument) << te;
    EXPECT_EQ(FramingHttpStatus(s), 400) << te;
  }
  // Split across field lines: the list is their concatenation.
  EXPECT_EQ(FramingHttpStatus(CheckFraming(Head(
                {{"Host", "a"}, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "gzip"}}))),
            400);
}

TEST(CheckFramingTest, UnsupportedCodingBeforeChunkedIs501) {
  for (const char* te : {"gzip, chunked", "foo, chunked", "deflate,chunked"}) {
    const absl::Status s = CheckFraming(Head({{"Host", "a"}, {"Transfer-Encoding", te}}));
    EXPECT_EQ(Code(s), absl::StatusCode::kUnimplemented) << te;
    EXPECT_EQ(FramingHttpStatus(s), 501) << te;
  }
  EXPECT_EQ(FramingHttpStatus(CheckFraming(Head(
                {{"Host", "a"}, {"Transfer-Encoding", "gzip"}, {"Transfer-Encoding", "chunked"}}))),
            501);
}

TEST(CheckFramingTest, ChunkedTwiceOrMalformedIs400) {
  for (const char* te : {"chunked, chunked", "chunked;q=1", "", " , ", "chun ked", "\"chunked\""}) {
    const absl::Status s = CheckFraming(Head({{"Host", "a"}, {"Transfer-Encoding", te}}));
    EXPECT_EQ(Code(s), absl::StatusCode::kInvalidArgument) << "[" << te << "]";
  }
  EXPECT_EQ(
      Code(CheckFraming(Head(
          {{"Host", "a"}, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}}))),
      absl::StatusCode::kInvalidArgument);
}

TEST(CheckFramingTest, ContentLengthWithTransferEncodingIs400) {
  const absl::Status s = CheckFraming(
      Head({{"Host", "a"}, {"Content-Length", "4"}, {"Transfer-Encoding", "chunked"}}));
  EXPECT_EQ(Code(s), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("both Transfer-Encoding and Content-Length"));
  EXPECT_EQ(Code(CheckFraming(
                Head({{"Host", "a"}, {"Transfer-Encoding", "gzip"}, {"Content-Length", "4"}}))),
            absl::StatusCode::kInvalidArgument);
}

TEST(CheckFramingTest, BadOrDifferingContentLengthIs400) {
  for (const char* cl : {"4, 5", "-1", "+4", "0x10", "", "4 4", "99999999999999999999"}) {
    EXPECT_EQ(Code(CheckFraming(Head({{"Host", "a"}, {"Content-Length", cl}}))),
              absl::StatusCode::kInvalidArgument)
        << cl;
  }
  EXPECT_EQ(
      Code(CheckFraming(Head({{"Host", "a"}, {"Content-Length", "4"}, {"Content-Length", "5"}}))),
      absl::StatusCode::kInvalidArgument);
}

TEST(CheckFramingTest, HostRules) {
  EXPECT_THAT(CheckFraming(Head({})).message(), HasSubstr("must have a Host header"));
  EXPECT_THAT(CheckFraming(Head({{"Host", "a"}, {"host", "b"}})).message(),
              HasSubstr("only one Host"));
  for (const char* host : {"a, b", "a b", "a\tb"}) {
    EXPECT_EQ(Code(CheckFraming(Head({{"Host", host}}))), absl::StatusCode::kInvalidArgument)
        << host;
  }
}

TEST(CheckFramingTest, TransferEncodingOnHttp10Is400) {
  EXPECT_THAT(CheckFraming(Head({{"Transfer-Encoding", "chunked"}}, 10)).message(),
              HasSubstr("HTTP/1.0"));
}

TEST(CheckHeaderBlockTest, ObsoleteLineFoldingIs400) {
  EXPECT_TRUE(CheckHeaderBlock("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n").ok());
  EXPECT_EQ(Code(CheckHeaderBlock("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n")),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(CheckHeaderBlock("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\t2\r\n\r\n")),
            absl::StatusCode::kInvalidArgument);
  // White space before the first field line.
  EXPECT_EQ(Code(CheckHeaderBlock("GET / HTTP/1.1\r\n Host: a\r\n\r\n")),
            absl::StatusCode::kInvalidArgument);
  // What follows the head (a body) is not looked at.
  EXPECT_TRUE(CheckHeaderBlock("POST / HTTP/1.1\r\nHost: a\r\n\r\n\n body\r\n x").ok());
}

TEST(CheckRequestBytesTest, EverySmugglingVariantIsRefused) {
  const std::string tail = "\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_TRUE(CheckRequestBytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc").ok());
  EXPECT_TRUE(
      CheckRequestBytes("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked" + tail).ok());
  for (const char* te : {"gzip", "chunked, gzip", "foo", "gzip, chunked", "chunked, chunked"}) {
    const absl::Status s = CheckRequestBytes(
        std::string("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ") + te + tail);
    EXPECT_FALSE(s.ok()) << te;
    EXPECT_NE(Code(s), absl::StatusCode::kUnavailable) << te;
  }
  // Content-Length with Transfer-Encoding, in both orders.
  EXPECT_FALSE(
      CheckRequestBytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: "
                        "chunked" +
                        tail)
          .ok());
  EXPECT_FALSE(
      CheckRequestBytes(
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 3" + tail)
          .ok());
  EXPECT_FALSE(CheckRequestBytes("GET / HTTP/1.1\r\nX: y\r\n\r\n").ok());  // no Host
  EXPECT_FALSE(CheckRequestBytes("GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n").ok());
  EXPECT_FALSE(
      CheckRequestBytes("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").ok());
  EXPECT_FALSE(CheckRequestBytes(
                   "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n")
                   .ok());
  EXPECT_EQ(Code(CheckRequestBytes("GET / HTTP/1.1\r\nHost: a\r\n")),
            absl::StatusCode::kUnavailable);
}

TEST(CheckRequestBytesTest, AnyBytesAreSafe) {
  std::string bytes;
  for (int i = 0; i < 2000; ++i) {
    bytes.push_back(static_cast<char>((i * 7919) % 256));
    (void)CheckRequestBytes(bytes);
  }
}

}  // namespace
}  // namespace anyai::server
