// Percent-decoding (RFC 3986 §2.1), the one decoder of "%XX" escapes: URL path segments and query
// strings (with `+` as a space, the form encoding browsers and SDKs use for queries), and the
// peer strings gRPC writes as URIs ("ipv6:%5B::1%5D:54621").
//
//   PercentDecode("gpt%2D4");                              // "gpt-4"
//   PercentDecode("a+b%21", PlusIs::kSpace);               // "a b!"
//   PercentDecode("100%");                                 // nullopt: a malformed escape
//
// Thread safety: a pure function.
#ifndef ANYAI_SERVER_NET_PERCENT_DECODING_H_
#define ANYAI_SERVER_NET_PERCENT_DECODING_H_

#include <optional>
#include <string>
#include <string_view>

namespace anyai::net {

enum class PlusIs { kPlus, kSpace };

// `text` with every "%XX" (two hex digits, either case) replaced by its byte; nullopt when a '%'
// is not followed by two hex digits. The bytes are not checked further (e.g. for UTF-8).
std::optional<std::string> PercentDecode(std::string_view text, PlusIs plus = PlusIs::kPlus);

}  // namespace anyai::net

#endif  // ANYAI_SERVER_NET_PERCENT_DECODING_H_
