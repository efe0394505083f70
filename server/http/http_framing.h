// HTTP/1.1 message framing checks (RFC 9112 §2.2, §3.2, §5.2, §6), run by the transport
// (http_server.h) on every request after its line and headers are read and before any byte of
// its body is read or it is dispatched. A request that fails is answered with the status the
// Status maps to and its connection is closed, so that bytes a front proxy and we might frame
// differently (request smuggling) are never parsed as a request.
//
//   absl::Status s = CheckHeaderBlock(raw_bytes_up_to_and_including_the_empty_line);
//   if (s.ok()) s = CheckFraming(HttpRequestHead{.version = 11, .fields = {{"Host", "a"}}});
//   if (!s.ok()) ... FramingHttpStatus(s) (400 or 501), s.message() for the client ...
//
// What is refused (INVALID_ARGUMENT, HTTP 400, unless said otherwise):
//   - obsolete line folding: a header line that starts with SP or HTAB (CheckHeaderBlock);
//   - Transfer-Encoding on an HTTP/1.0 request;
//   - Transfer-Encoding together with Content-Length;
//   - a Transfer-Encoding whose final coding is not `chunked` (its body length cannot be
//     determined), `chunked` more than once, or an empty or malformed coding list;
//   - a transfer coding other than `chunked` before a final `chunked` (e.g. `gzip, chunked`):
//     UNIMPLEMENTED, HTTP 501 — no other coding is implemented;
//   - Content-Length that is not a decimal number, or several that differ;
//   - an HTTP/1.1 request with no Host, more than one Host, or a Host value that is not one
//     authority (contains a comma, white space or a control character).
// Messages say what and why, never echo more than a short, quoted coding name.
//
// Thread safety: pure functions of their arguments. Every input is safe, however malformed
// (these are fuzzed).
#ifndef ANYAI_SERVER_HTTP_HTTP_FRAMING_H_
#define ANYAI_SERVER_HTTP_HTTP_FRAMING_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace anyai::server {

// A request's line version and header fields as received: one entry per field line, names
// in the case sent, values without surrounding white space (what Beast's parser gives).
struct HttpRequestHead {
  int version = 11;  // 10 * major + minor: 10 for HTTP/1.0, 11 for HTTP/1.1
  std::vector<std::pair<std::string, std::string>> fields;
};

// The framing rules above that need only the parsed head. OK when the request may be read.
absl::Status CheckFraming(const HttpRequestHead& head);

// The rules that need the raw bytes of the request line and header fields (`block`, up to and
// including the empty line, or a prefix of them): obsolete line folding. Beast's parser
// silently unfolds it, so it cannot be seen in the parsed fields.
absl::Status CheckHeaderBlock(std::string_view block);

// The HTTP status for a non-OK result of the checks above: 501 for UNIMPLEMENTED, else 400.
int FramingHttpStatus(const absl::Status& status);

// For fuzzers and tests: parses `bytes` as a request head with the transport's own parser
// (Beast, within `max_header_bytes`) and runs both checks on it. INVALID_ARGUMENT for what the
// parser itself refuses, UNAVAILABLE when the head is incomplete.
absl::Status CheckRequestBytes(std::string_view bytes, size_t max_header_bytes = 16 << 10);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_HTTP_HTTP_FRAMING_H_
