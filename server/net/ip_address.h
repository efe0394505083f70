// An IPv4 or IPv6 address as a value: parsed once from text, compared by its bytes, printed in
// one canonical form, and classified (is it public?). The one parser of address text in the
// gateway: the tenant of an anonymous caller, the trusted proxies, the SSRF guard and the
// config all read addresses through IpAddress::Parse.
//
//   absl::StatusOr<net::IpAddress> ip = net::IpAddress::Parse("::FFFF:203.0.113.7");
//   ip->ToString();  // "203.0.113.7": an IPv4-mapped IPv6 address is the IPv4 client
//   ip->IsPublic();  // true
//
// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is folded into the IPv4 address it carries at
// parse time, so that one client is one tenant however its address was written and a range
// such as 10.0.0.0/8 covers it.
//
// Thread safety: an immutable value; share it freely.
#ifndef ANYAI_SERVER_NET_IP_ADDRESS_H_
#define ANYAI_SERVER_NET_IP_ADDRESS_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace anyai::net {

class IpAddress {
 public:
  // IPv4 as four decimal octets without leading zeros ("203.0.113.7"; not "203.0.113.07",
  // "127.1" or "0x7f.0.0.1", which some resolvers read as other addresses), or IPv6 in any
  // form inet_pton(3) accepts ("2001:DB8::1", "::ffff:10.0.0.1"). No brackets, zone or port.
  // INVALID_ARGUMENT quoting the text otherwise.
  static absl::StatusOr<IpAddress> Parse(std::string_view text);

  // From the bytes of an in_addr / in6_addr (network order), e.g. what getaddrinfo returns.
  // An IPv4-mapped IPv6 address becomes the IPv4 address.
  static IpAddress FromIpv4Bytes(const std::array<uint8_t, 4>& bytes);
  static IpAddress FromIpv6Bytes(const std::array<uint8_t, 16>& bytes);

  // The unspecified address 0.0.0.0 (a default-constructed IpAddress is it).
  IpAddress() : IpAddress(FromIpv4Bytes({0, 0, 0, 0})) {}

  bool is_ipv4() const;

  // The address as 16 bytes, an IPv4 address as ::ffff:a.b.c.d, so that one prefix comparison
  // serves both families (see Cidr).
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }

  // The canonical text: inet_ntop(3) of the bytes, IPv4 as a dotted quad ("2001:db8::1",
  // "203.0.113.7"). Parse(ToString()) == *this.
  std::string ToString() const;

  // 0.0.0.0 or :: (a wildcard listen address).
  bool IsUnspecified() const;

  // True for a public unicast address; false for unspecified, loopback, private (10/8,
  // 172.16/12, 192.168/16, fc00::/7), carrier-grade NAT (100.64/10), link-local (169.254/16,
  // fe80::/10), site-local (fec0::/10), multicast, broadcast, reserved (0/8, 240/4),
  // benchmarking (198.18/15), documentation (192.0.2/24, 198.51.100/24, 203.0.113/24,
  // 2001:db8::/32, 3fff::/20), IETF protocol assignments (192.0.0/24), 6to4 relay
  // (192.88.99/24), discard (100::/64), Teredo (2001::/32), and any IPv6 outside 2000::/3.
  // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses are judged by the IPv4 address they
  // embed (IPv4-mapped ones already are IPv4). The SSRF rule of SPEC §5.
  bool IsPublic() const;

  friend bool operator==(const IpAddress&, const IpAddress&) = default;

 private:
  explicit IpAddress(const std::array<uint8_t, 16>& bytes) : bytes_(bytes) {}

  std::array<uint8_t, 16> bytes_;
};

}  // namespace anyai::net

#endif  // ANYAI_SERVER_NET_IP_ADDRESS_H_
