#include "server/net/cidr.h"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "server/net/internal/quote.h"
#include "server/net/ip_address.h"

namespace anyai::net {
namespace {

// The IPv4 part of the 128 bits: an IPv4 prefix of n bits is an IPv6 one of n + 96.
constexpr int kIpv4Offset = 96;

// The mask of a byte of which the first `bits` are in the prefix (any int).
uint8_t Mask(int bits) {
  if (bits <= 0) return 0;
  if (bits >= 8) return 0xff;
  return static_cast<uint8_t>(0xff << (8 - bits));
}

std::array<uint8_t, 16> Masked(std::array<uint8_t, 16> bytes, int prefix_bits) {
  for (int i = 0; i < 16; ++i) bytes[i] &= Mask(prefix_bits - 8 * i);
  return bytes;
}

bool ParsePrefixLength(std::string_view text, int max, int& out) {
  if (text.empty() || text.size() > 3) return false;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  if (value > max) return false;
  out = value;
  return true;
}

}  // namespace

absl::StatusOr<Cidr> Cidr::Parse(std::string_view text) {
  const size_t slash = text.find('/');
  const std::string_view address_text = text.substr(0, slash);
  absl::StatusOr<IpAddress> address = IpAddress::Parse(address_text);
  if (!address.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(internal::Quoted(text),
                     " is not a CIDR (e.g. 10.0.0.0/8 or ::1/128): ", address.status().message()));
  }
  // The prefix counts bits of the family the text is written in: "::ffff:10.0.0.0/104" is an
  // IPv6 prefix even though the address is an IPv4 one.
  const bool written_as_ipv4 = address_text.find(':') == std::string_view::npos;
  const int max = written_as_ipv4 ? 32 : 128;
  int bits = max;
  if (slash != std::string_view::npos && !ParsePrefixLength(text.substr(slash + 1), max, bits)) {
    return absl::InvalidArgumentError(absl::StrCat(
        internal::Quoted(text), " is not a CIDR: the prefix length must be in [0, ", max, "]"));
  }
  const int prefix_bits = written_as_ipv4 ? bits + kIpv4Offset : bits;
  return Cidr(Masked(address->bytes(), prefix_bits), prefix_bits);
}

bool Cidr::Contains(const IpAddress& address) const {
  return Masked(address.bytes(), prefix_bits_) == base_;
}

IpAddress Cidr::base() const { return IpAddress::FromIpv6Bytes(base_); }

int Cidr::prefix_length() const {
  const bool ipv4 = prefix_bits_ >= kIpv4Offset && base().is_ipv4();
  return ipv4 ? prefix_bits_ - kIpv4Offset : prefix_bits_;
}

std::string Cidr::ToString() const { return absl::StrCat(base().ToString(), "/", prefix_length()); }

}  // namespace anyai::net
