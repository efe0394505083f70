// Who an anonymous caller is: the client's IP address, from the transport's peer and, only
// when the peer is a configured trusted proxy, the `X-Forwarded-For` header (SPEC §3); and the
// network it is counted as (ClientNetwork: an IPv6 host usually owns a whole /64, so counting
// per address would give it 2^64 anonymous tenants).
// Addresses are read by server/net/ (ip_address.h, cidr.h), the one parser of them.
//
// Thread safety: TrustedProxies is immutable once built; share it freely.
#ifndef ANYAI_SERVER_GATEWAY_CLIENT_ADDRESS_H_
#define ANYAI_SERVER_GATEWAY_CLIENT_ADDRESS_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/net/cidr.h"
#include "server/net/ip_address.h"

namespace anyai::server {

// The address part of a gRPC peer string, canonical (CanonicalAddress): "ipv4:203.0.113.7:5555"
// -> "203.0.113.7", "ipv6:[::1]:5555" -> "::1", "ipv6:[::ffff:10.0.0.1]:5555" -> "10.0.0.1",
// a zone ("%25eth0" as gRPC escapes it) dropped; the input unchanged when it is neither form
// ("unix:...", etc).
std::string AddressOfGrpcPeer(std::string_view peer);

// The canonical text of an IP address (net::IpAddress::ToString: inet_ntop of its bytes, an
// IPv4-mapped IPv6 address as the IPv4 one), so that one client is one tenant however its
// address was written; nullopt when `address` is not an IP address.
std::optional<std::string> CanonicalAddress(std::string_view address);

// The network a client address is counted as, for anonymous tenants and the failed-auth limit:
// an IPv4 address (IPv4-mapped IPv6 included) is itself; an IPv6 address is its network of
// `ipv6_prefix_length` bits (clamped to [0, 128]) written "2001:db8:1:2::/64", or the address
// alone at 128. Anything that is not an IP address ("unix:...") is returned unchanged.
std::string ClientNetwork(std::string_view address, int ipv6_prefix_length);

class TrustedProxies {
 public:
  // CIDRs such as "10.0.0.0/8" or "::1/128"; a bare address means a single host (net::Cidr).
  // INVALID_ARGUMENT naming the first bad entry: `trusted_proxies[1]: "10.0.0.0/33" is not a
  // CIDR: ...`. ValidateConfig calls this too, so the rule and the message are one.
  static absl::StatusOr<TrustedProxies> Create(const std::vector<std::string>& cidrs);
  template <typename Container>
  static absl::StatusOr<TrustedProxies> Create(const Container& cidrs) {
    return Create(std::vector<std::string>(cidrs.begin(), cidrs.end()));
  }

  // No proxy is trusted: every caller is its peer.
  TrustedProxies() = default;

  bool Contains(std::string_view address) const;

  // The client's address, canonical (CanonicalAddress): `peer` itself, unless `peer` is trusted
  // and `forwarded_for` is set, in which case the right-most address of X-Forwarded-For that
  // is not itself a trusted proxy (the first hop our proxies did not add). Malformed entries
  // end the walk.
  std::string ClientAddress(std::string_view peer, std::string_view forwarded_for) const;

 private:
  bool Contains(const net::IpAddress& address) const;

  std::vector<net::Cidr> ranges_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_CLIENT_ADDRESS_H_
