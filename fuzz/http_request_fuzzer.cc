// Fuzzes what the HTTP front does with a connection's bytes before any endpoint runs: Beast's
// request parser as the transport configures it (server/http/http_server.cc: the default
// header and body limits), the RFC 9112 framing checks on each head (http_framing.h), and for
// each whole request the target's path and query as the endpoints take them: the router
// (http_router.h), percent-decoding (server/net/percent_decoding.h) and the query string
// parsers of every GET endpoint (http_query.h). The input may hold several pipelined requests.
//
// Besides crashes and sanitizer reports, a request the framing checks pass but whose body
// Beast would then frame otherwise than they mean (chunked without a Transfer-Encoding that
// ends in chunked, a Content-Length that is not the one sent) aborts: that is smuggling.
#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "server/http/http_api.h"
#include "server/http/http_framing.h"
#include "server/http/http_query.h"
#include "server/http/http_router.h"
#include "server/net/percent_decoding.h"

namespace {

namespace server = anyai::server;
namespace http = boost::beast::http;

// ServerConfig's defaults: max_header_bytes 16 KiB, max_body_bytes 1 MiB.
constexpr uint32_t kMaxHeaderBytes = 16 << 10;
constexpr uint64_t kMaxBodyBytes = 1 << 20;
// At most this many pipelined requests per input (each costs a parser).
constexpr int kMaxRequests = 16;

void Require(bool ok, const char* what) {
  if (ok) return;
  std::cerr << "http_request_fuzzer: " << what << "\n";
  std::abort();
}

std::string Str(boost::beast::string_view s) { return std::string(s.data(), s.size()); }

// The routes of http_api.h (the handlers never run here).
const server::HttpRouter& TheRouter() {
  static const server::HttpRouter* const router = [] {
    auto* r = new server::HttpRouter;
    for (const auto& [method, path] :
         {std::pair{"POST", "/chat/completions"}, std::pair{"GET", "/models"},
          std::pair{"GET", "/models/*"}, std::pair{"POST", "/images/generations"},
          std::pair{"GET", "/imagine"}, std::pair{"GET", "/ask"},
          std::pair{"GET", "/images/vision"}, std::pair{"GET", "/images/files/*"},
          std::pair{"GET", "/check"}, std::pair{"GET", "/healthz"}, std::pair{"GET", "/readyz"}}) {
      Require(r->Add(method, path, [](server::HttpExchange&) {}).ok(), "a route is refused");
    }
    return r;
  }();
  return *router;
}

void FuzzTarget(std::string_view method, std::string_view target) {
  const size_t q = target.find('?');
  const std::string_view path = target.substr(0, q);
  const std::string_view query = q == std::string_view::npos ? "" : target.substr(q + 1);
  const server::HttpRouter::Match match = TheRouter().Find(method, path);
  if (match.route != nullptr) (void)server::HttpApi::EndpointOfRoute(match.route->path);
  (void)server::WithoutV1(path);
  (void)anyai::net::PercentDecode(path);
  (void)anyai::net::PercentDecode(query, anyai::net::PlusIs::kSpace);
  (void)server::DecodeQuery(query);
  (void)server::ImagineRequestFromQuery(query);
  (void)server::AskRequestFromQuery(query);
  (void)server::DescribeImageRequestFromQuery(query);
  (void)server::CheckKeyFromQuery(query);
}

// Whether the framing checks' verdict agrees with how Beast frames the body it then reads.
void CheckBodyFraming(const http::request_parser<http::string_body>& parser) {
  std::optional<std::string> transfer_encoding;
  std::optional<std::string> content_length;
  for (const auto& field : parser.get()) {
    const std::string name = absl::AsciiStrToLower(Str(field.name_string()));
    if (name == "transfer-encoding") transfer_encoding = Str(field.value());
    if (name == "content-length") content_length = Str(field.value());
  }
  if (transfer_encoding.has_value()) {
    Require(parser.chunked(), "framing passed a Transfer-Encoding that Beast does not chunk");
  } else {
    Require(!parser.chunked(), "Beast chunks a body that framing saw no Transfer-Encoding for");
  }
  if (content_length.has_value() && !transfer_encoding.has_value()) {
    uint64_t length = 0;
    Require(absl::SimpleAtoi(*content_length, &length), "framing passed a bad Content-Length");
    Require(parser.content_length() == length,
            "Beast reads another body length than the Content-Length framing passed");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  (void)server::CheckRequestBytes(input);

  for (int n = 0; n < kMaxRequests && !input.empty(); ++n) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kMaxHeaderBytes);
    parser.body_limit(kMaxBodyBytes);
    boost::beast::error_code ec;
    // The head first, then (only if the framing checks pass, as the transport does) the body.
    size_t used = 0;
    while (!ec && !parser.is_header_done() && used < input.size()) {
      const size_t n =
          parser.put(boost::asio::buffer(input.data() + used, input.size() - used), ec);
      used += n;
      if (n == 0) break;
    }
    if (ec || !parser.is_header_done()) return 0;
    if (!server::CheckHeaderBlock(input.substr(0, used)).ok()) return 0;
    server::HttpRequestHead head;
    head.version = static_cast<int>(parser.get().version());
    for (const auto& field : parser.get()) {
      head.fields.emplace_back(Str(field.name_string()), Str(field.value()));
    }
    if (!server::CheckFraming(head).ok()) return 0;
    CheckBodyFraming(parser);
    while (!ec && !parser.is_done() && used < input.size()) {
      const size_t n =
          parser.put(boost::asio::buffer(input.data() + used, input.size() - used), ec);
      used += n;
      if (n == 0) break;
    }
    if (!parser.is_done()) {
      if (!ec || ec == http::error::need_more) {
        // The connection ends here: what Beast reports at end of stream.
        parser.put_eof(ec);
      }
      if (ec || !parser.is_done()) return 0;
    }
    FuzzTarget(Str(parser.get().method_string()), Str(parser.get().target()));
    input.remove_prefix(used);
  }
  return 0;
}
