// Hosts and HOST:PORT as the gateway reads them: listen addresses in the config
// ("0.0.0.0:8080", "[::]:50051", "gateway.internal:8080"), the host of a URL (url.h) and the
// host names of an allow-list (allow_list.h).
//
//   absl::StatusOr<net::HostPort> listen = net::HostPort::Parse("[::1]:8080");
//   listen->host.name;     // "::1"
//   listen->host.address;  // the IpAddress ::1; nullopt for a host name
//   listen->port;          // 8080
//
// One rule for what a host is: an IPv4 dotted quad, an IPv6 address in brackets (without a
// zone), or a host name (IsHostName). A host whose last label is numeric must be a dotted quad,
// so that "2130706433", "0x7f.1" or "127.1" (which resolvers may read as 127.0.0.1) is never
// taken for a name.
//
// Thread safety: immutable values and pure functions.
#ifndef ANYAI_SERVER_NET_HOST_PORT_H_
#define ANYAI_SERVER_NET_HOST_PORT_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/net/ip_address.h"

namespace anyai::net {

// A host name: dot-separated labels of ASCII letters (either case), digits, '-' and '_' (which
// DNS forbids but container service names use), each 1 to 63 bytes and neither starting nor
// ending with '-', 253 bytes in all, one trailing dot allowed; and a last label that is not
// numeric (all digits, or "0x..."), which would make it an address in disguise.
bool IsHostName(std::string_view name);

struct Host {
  // "[2001:db8::1]" (IPv6 in brackets), "203.0.113.7" (a trailing dot is dropped) or a host
  // name (IsHostName); any case. INVALID_ARGUMENT quoting the text and saying what is wrong.
  static absl::StatusOr<Host> Parse(std::string_view text);

  // Lower case, as written: an IPv6 address without its brackets, a host name with its
  // trailing dot if it had one.
  std::string name;
  // Set when the host is an IP address literal (IPv4-mapped IPv6 folded to IPv4, ip_address.h).
  std::optional<IpAddress> address;

  // `name`, an IPv6 address in brackets: the text Parse() reads back to this Host.
  std::string ToString() const;

  friend bool operator==(const Host&, const Host&) = default;
};

struct HostPort {
  // "HOST:PORT": HOST as Host::Parse reads it, PORT decimal in [0, 65535] (0 asks the system
  // for a free port when listening). INVALID_ARGUMENT quoting the text: `"localhost" is not
  // HOST:PORT (e.g. 0.0.0.0:8080 or [::]:8080): no ':PORT'`.
  static absl::StatusOr<HostPort> Parse(std::string_view text);

  Host host;
  int port = 0;

  // "[::1]:8080", "example.com:443".
  std::string ToString() const;

  friend bool operator==(const HostPort&, const HostPort&) = default;
};

}  // namespace anyai::net

#endif  // ANYAI_SERVER_NET_HOST_PORT_H_
