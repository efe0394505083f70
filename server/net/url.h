// An absolute URL split as the gateway needs it: scheme, host, port and the rest. Used for
// user-supplied image URLs (validation, the SSRF guard) and the config's upstream base URLs.
//
//   absl::StatusOr<net::Url> url = net::Url::Parse("HTTPS://Example.COM:8443/a.png?x=1#top");
//   url->scheme;          // "https"
//   url->host.name;       // "example.com" (host_port.h: one rule for hosts)
//   url->port;            // 8443; 443 had it been absent
//   url->PathAndQuery();  // "/a.png?x=1"
//
// What Parse accepts is deliberately narrower than RFC 3986, so that no two parsers on the way
// to a fetcher can disagree on the host: printable ASCII only (no spaces, controls or raw
// non-ASCII: percent-encode them), no backslash, "scheme://" with an authority, no user
// information ('@' in the authority), a host as Host::Parse reads it and a port in [1, 65535].
// A policy (which schemes, how long) is the caller's.
//
// Thread safety: an immutable value and a pure function.
#ifndef ANYAI_SERVER_NET_URL_H_
#define ANYAI_SERVER_NET_URL_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/net/host_port.h"

namespace anyai::net {

struct Url {
  // INVALID_ARGUMENT otherwise, with a message that says what is wrong without repeating the
  // URL (which may be long), for the caller to put after the field's name: "url: has a bad
  // host or port: no closing ']'".
  static absl::StatusOr<Url> Parse(std::string_view url);

  std::string scheme;  // lower case: "http", "https", ...
  Host host;
  int port = 0;                         // explicit, else 80 for http and 443 for https, else 0
  std::string path;                     // from the first '/' to '?' or '#'; may be empty
  std::optional<std::string> query;     // after '?', without it
  std::optional<std::string> fragment;  // after '#', without it

  // What an HTTP request line carries: path ("/" when empty) and "?query"; no fragment.
  std::string PathAndQuery() const;

  friend bool operator==(const Url&, const Url&) = default;
};

}  // namespace anyai::net

#endif  // ANYAI_SERVER_NET_URL_H_
