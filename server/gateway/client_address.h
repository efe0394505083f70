// Who an anonymous caller is: the client's IP address, from the transport's peer and, only
// when the peer is a configured trusted proxy, the `X-Forwarded-For` header (SPEC §3).
//
// Thread safety: TrustedProxies is immutable once built; share it freely.
#ifndef ANYAI_SERVER_GATEWAY_CLIENT_ADDRESS_H_
#define ANYAI_SERVER_GATEWAY_CLIENT_ADDRESS_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace anyai::server {

// The address part of a gRPC peer string ("ipv4:203.0.113.7:5555" -> "203.0.113.7",
// "ipv6:[::1]:5555" -> "::1"); the input unchanged when it has neither form ("unix:..." etc).
std::string AddressOfGrpcPeer(std::string_view peer);

// The canonical text of an IP address (inet_ntop of its bytes; an IPv4-mapped IPv6 address
// as the IPv4 one), so that one client is one tenant however its address was written; nullopt
// when `address` is not an IP address.
std::optional<std::string> CanonicalAddress(std::string_view address);

class TrustedProxies {
 public:
  // CIDRs such as "10.0.0.0/8" or "::1/128"; a bare address means a single host.
  // INVALID_ARGUMENT naming the first bad entry.
  static absl::StatusOr<TrustedProxies> Create(const std::vector<std::string>& cidrs);

  bool Contains(std::string_view address) const;

  // The client's address, canonical (CanonicalAddress): `peer` itself, unless `peer` is trusted
  // and `forwarded_for` is set, in which case the right-most address of X-Forwarded-For that
  // is not itself a trusted proxy (the first hop our proxies did not add). Malformed entries
  // end the walk.
  std::string ClientAddress(std::string_view peer, std::string_view forwarded_for) const;

 private:
  struct Range {
    std::array<uint8_t, 16> bytes;  // IPv4 as ::ffff:a.b.c.d
    int prefix_bits;                // of the 128
  };
  std::vector<Range> ranges_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_CLIENT_ADDRESS_H_
