#include "server/http/http_framing.h"

#include <algorithm>
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace anyai::server {
namespace {

namespace http = boost::beast::http;

bool IsTchar(char c) {
  if (absl::ascii_isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':  // NOLINT
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':  // NOLINT
      return true;
    default:
      return false;
  }
}

bool IsToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsTchar(c)) return false;
  }
  return true;
}

std::string_view StripOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool NameIs(std::string_view name, std::string_view lower) {
  return absl::EqualsIgnoreCase(absl::string_view(name.data(), name.size()),
                                absl::string_view(lower.data(), lower.size()));
}

// A coding name for a message: short, and only token characters (so nothing odd is echoed).
std::string Quoted(std::string_view coding) {
  if (coding.size() > 32) coding = coding.substr(0, 32);
  return absl::StrCat("\"", absl::string_view(coding.data(), coding.size()), "\"");
}

absl::Status Bad(std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("malformed HTTP request: ", absl::string_view(why.data(), why.size())));
}

// Transfer-Encoding's codings, every field line's list in order, lower-cased.
absl::Status CheckTransferCodings(const std::vector<std::string_view>& values) {
  std::vector<std::string> codings;
  for (std::string_view value : values) {
    for (absl::string_view element :
         absl::StrSplit(absl::string_view(value.data(), value.size()), ',')) {
      std::string_view e = StripOws(std::string_view(element.data(), element.size()));
      if (e.empty()) continue;  // empty list elements are allowed (RFC 9110 §5.6.1)
      std::string_view name = e;
      const bool has_parameters = e.find(';') != std::string_view::npos;
      if (has_parameters) name = StripOws(e.substr(0, e.find(';')));
      if (!IsToken(name)) return Bad("Transfer-Encoding is not a list of transfer codings");
      std::string lower = absl::AsciiStrToLower(absl::string_view(name.data(), name.size()));
      if (lower == "chunked" && has_parameters) {
        return Bad("the chunked transfer coding takes no parameters");
      }
      codings.push_back(std::move(lower));
    }
  }
  if (codings.empty()) return Bad("Transfer-Encoding names no transfer coding");
  size_t chunked = 0;
  for (const std::string& c : codings) chunked += c == "chunked" ? 1 : 0;
  if (codings.back() != "chunked") {
    return Bad(chunked > 0 ? "the chunked transfer coding is not the final one"
                           : "the final transfer coding is not chunked, so the body's length "
                             "cannot be determined");
  }
  if (chunked > 1) return Bad("the chunked transfer coding is applied more than once");
  for (const std::string& c : codings) {
    if (c != "chunked") {
      return absl::UnimplementedError(
          absl::StrCat("the transfer coding ", Quoted(c), " is not supported (only chunked is)"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckContentLengths(const std::vector<std::string_view>& values) {
  std::optional<uint64_t> length;
  for (std::string_view value : values) {
    for (absl::string_view element :
         absl::StrSplit(absl::string_view(value.data(), value.size()), ',')) {
      std::string_view e = StripOws(std::string_view(element.data(), element.size()));
      uint64_t n = 0;
      const bool digits =
          !e.empty() && e.size() <= 19 &&
          std::all_of(e.begin(), e.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!digits || !absl::SimpleAtoi(absl::string_view(e.data(), e.size()), &n)) {
        return Bad("Content-Length is not a decimal number");
      }
      if (length.has_value() && *length != n) return Bad("Content-Length values differ");
      length = n;
    }
  }
  return absl::OkStatus();
}

bool ValidHost(std::string_view host) {
  for (char c : host) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == ',') return false;
  }
  return true;
}

}  // namespace

absl::Status CheckFraming(const HttpRequestHead& head) {
  std::vector<std::string_view> transfer_encodings;
  std::vector<std::string_view> content_lengths;
  std::vector<std::string_view> hosts;
  for (const auto& [name, value] : head.fields) {
    if (NameIs(name, "transfer-encoding")) {
      transfer_encodings.push_back(value);
    } else if (NameIs(name, "content-length")) {
      content_lengths.push_back(value);
    } else if (NameIs(name, "host")) {
      hosts.push_back(value);
    }
  }
  if (!transfer_encodings.empty()) {
    if (head.version < 11) return Bad("Transfer-Encoding is not allowed in an HTTP/1.0 request");
    if (!content_lengths.empty()) {
      return Bad("a request may not have both Transfer-Encoding and Content-Length");
    }
    if (absl::Status s = CheckTransferCodings(transfer_encodings); !s.ok()) return s;
  }
  if (absl::Status s = CheckContentLengths(content_lengths); !s.ok()) return s;
  if (head.version >= 11) {
    if (hosts.empty()) return Bad("an HTTP/1.1 request must have a Host header");
    if (hosts.size() > 1) return Bad("a request may have only one Host header");
  }
  for (std::string_view host : hosts) {
    if (!ValidHost(host)) return Bad("the Host header is not a valid host");
  }
  return absl::OkStatus();
}

absl::Status CheckHeaderBlock(std::string_view block) {
  // Skip the request line; a line break followed by SP or HTAB before the empty line that
  // ends the head is a folded (or, right after the request line, a misplaced) field line.
  size_t pos = block.find('\n');
  while (pos != std::string_view::npos && pos + 1 < block.size()) {
    const char next = block[pos + 1];
    if (next == ' ' || next == '\t') {
      return Bad("obsolete line folding is not allowed in header fields");
    }
    if (next == '\n' || (next == '\r' && pos + 2 < block.size() && block[pos + 2] == '\n')) {
      break;  // the empty line: the head ends
    }
    pos = block.find('\n', pos + 1);
  }
  return absl::OkStatus();
}

int FramingHttpStatus(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnimplemented ? 501 : 400;
}

absl::Status CheckRequestBytes(std::string_view bytes, size_t max_header_bytes) {
  http::request_parser<http::empty_body> parser;
  parser.header_limit(static_cast<uint32_t>(
      std::min<size_t>(max_header_bytes, std::numeric_limits<uint32_t>::max())));
  parser.eager(false);
  boost::beast::error_code ec;
  const size_t used = parser.put(boost::asio::buffer(bytes.data(), bytes.size()), ec);
  if (ec == http::error::need_more || (!ec && !parser.is_header_done())) {
    return absl::UnavailableError("the request head is incomplete");
  }
  if (ec) return Bad(ec.message());
  if (absl::Status s = CheckHeaderBlock(bytes.substr(0, used)); !s.ok()) return s;
  HttpRequestHead head;
  head.version = static_cast<int>(parser.get().version());
  for (const auto& field : parser.get()) {
    head.fields.emplace_back(std::string(field.name_string().data(), field.name_string().size()),
                             std::string(field.value().data(), field.value().size()));
  }
  return CheckFraming(head);
}

}  // namespace anyai::server
