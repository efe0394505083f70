// Internal to server/net/: the "HOST[:PORT]" part that HostPort and Url share, so that a
// listen address and a URL read hosts and ports by one rule. Not for other folders.
//
// Thread safety: a pure function.
#ifndef ANYAI_SERVER_NET_INTERNAL_AUTHORITY_H_
#define ANYAI_SERVER_NET_INTERNAL_AUTHORITY_H_

#include <optional>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/net/host_port.h"

namespace anyai::net::internal {

struct Authority {
  Host host;
  std::optional<int> port;  // when the text has ":PORT"
};

// "host", "host:port", "[v6]" or "[v6]:port", the port decimal in [min_port, 65535]. The error
// message says what is wrong without repeating `text`, for the caller to put after its own
// description of the whole ("... is not HOST:PORT: no closing ']'").
absl::StatusOr<Authority> ParseAuthority(std::string_view text, int min_port);

}  // namespace anyai::net::internal

#endif  // ANYAI_SERVER_NET_INTERNAL_AUTHORITY_H_
