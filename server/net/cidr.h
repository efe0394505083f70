// A CIDR range of IP addresses ("10.0.0.0/8", "2001:db8::/32"), for the config's lists of
// trusted proxies and SSRF exceptions.
//
//   absl::StatusOr<net::Cidr> proxies = net::Cidr::Parse("10.0.0.0/8");
//   proxies->Contains(*net::IpAddress::Parse("::ffff:10.1.2.3"));  // true
//
// An IPv4 range and the IPv4-mapped IPv6 range it stands for are one range ("10.0.0.0/8" and
// "::ffff:10.0.0.0/104" are equal), as IPv4-mapped addresses are IPv4 ones (ip_address.h).
//
// Thread safety: an immutable value; share it freely.
#ifndef ANYAI_SERVER_NET_CIDR_H_
#define ANYAI_SERVER_NET_CIDR_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/net/ip_address.h"

namespace anyai::net {

class Cidr {
 public:
  // "ADDRESS/PREFIX", the prefix length 0..32 for an IPv4 address and 0..128 for an IPv6 one
  // (decimal, at most three digits), or a bare ADDRESS, the range of that one address. Bits
  // past the prefix are ignored ("10.1.2.3/8" is 10.0.0.0/8). INVALID_ARGUMENT quoting the text
  // and saying which part is wrong otherwise.
  static absl::StatusOr<Cidr> Parse(std::string_view text);

  bool Contains(const IpAddress& address) const;

  // The first address of the range, and the prefix length in its family's bits (8 for
  // 10.0.0.0/8).
  IpAddress base() const;
  int prefix_length() const;

  // "10.0.0.0/8", "2001:db8::/32": base() and prefix_length(), always with the prefix.
  std::string ToString() const;

  friend bool operator==(const Cidr&, const Cidr&) = default;

 private:
  Cidr(const std::array<uint8_t, 16>& base, int prefix_bits)
      : base_(base), prefix_bits_(prefix_bits) {}

  std::array<uint8_t, 16> base_;  // IPv4 as ::ffff:a.b.c.d; bits past the prefix are 0
  int prefix_bits_;               // of the 128
};

}  // namespace anyai::net

#endif  // ANYAI_SERVER_NET_CIDR_H_
