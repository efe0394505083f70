#include "server/net/ip_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "server/net/internal/quote.h"

namespace anyai::net {
namespace {

constexpr std::array<uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
constexpr std::array<uint8_t, 12> kNat64Prefix = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};

bool HasPrefix(const std::array<uint8_t, 16>& bytes, const std::array<uint8_t, 12>& prefix) {
  return std::equal(prefix.begin(), prefix.end(), bytes.begin());
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Four decimal octets 0..255 without leading zeros. inet_pton(AF_INET) is not used: what it
// accepts beyond this differs between C libraries.
bool ParseDottedQuad(std::string_view s, std::array<uint8_t, 4>& out) {
  size_t octet = 0;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i < s.size() && s[i] != '.') {
      if (!IsDigit(s[i])) return false;
      continue;
    }
    const std::string_view part = s.substr(start, i - start);
    if (octet == 4 || part.empty() || part.size() > 3 || (part.size() > 1 && part[0] == '0')) {
      return false;
    }
    int value = 0;
    for (char c : part) value = value * 10 + (c - '0');
    if (value > 255) return false;
    out[octet++] = static_cast<uint8_t>(value);
    start = i + 1;
  }
  return octet == 4;
}

bool ParseIpv6(std::string_view s, std::array<uint8_t, 16>& out) {
  char text[INET6_ADDRSTRLEN];
  if (s.empty() || s.size() >= sizeof(text)) return false;
  std::memcpy(text, s.data(), s.size());
  text[s.size()] = '\0';
  return inet_pton(AF_INET6, text, out.data()) == 1;
}

bool IsPublicIpv4(const uint8_t* a) {
  const uint32_t ip =
      (uint32_t{a[0]} << 24) | (uint32_t{a[1]} << 16) | (uint32_t{a[2]} << 8) | uint32_t{a[3]};
  struct Range {
    uint32_t prefix;
    int bits;
  };
  static constexpr Range kNotPublic[] = {
      {0x00000000, 8},   // 0.0.0.0/8 "this network"
      {0x0A000000, 8},   // 10.0.0.0/8 private
      {0x64400000, 10},  // 100.64.0.0/10 carrier-grade NAT
      {0x7F000000, 8},   // 127.0.0.0/8 loopback
      {0xA9FE0000, 16},  // 169.254.0.0/16 link-local
      {0xAC100000, 12},  // 172.16.0.0/12 private
      {0xC0000000, 24},  // 192.0.0.0/24 IETF protocol assignments
      {0xC0000200, 24},  // 192.0.2.0/24 documentation
      {0xC0586300, 24},  // 192.88.99.0/24 6to4 relay anycast
      {0xC0A80000, 16},  // 192.168.0.0/16 private
      {0xC6120000, 15},  // 198.18.0.0/15 benchmarking
      {0xC6336400, 24},  // 198.51.100.0/24 documentation
      {0xCB007100, 24},  // 203.0.113.0/24 documentation
      {0xE0000000, 4},   // 224.0.0.0/4 multicast
      {0xF0000000, 4},   // 240.0.0.0/4 reserved, and 255.255.255.255 broadcast
  };
  for (const Range& r : kNotPublic) {
    const uint32_t mask = ~uint32_t{0} << (32 - r.bits);
    if ((ip & mask) == r.prefix) return false;
  }
  return true;
}

bool IsPublicIpv6(const std::array<uint8_t, 16>& a) {
  if (HasPrefix(a, kNat64Prefix)) return IsPublicIpv4(a.data() + 12);
  if (a[0] == 0x20 && a[1] == 0x02) return IsPublicIpv4(a.data() + 2);  // 6to4 2002::/16
  // Everything public is in global unicast 2000::/3: this excludes ::, ::1, IPv4-compatible
  // ::/96, 64:ff9b:1::/48, 100::/64, fc00::/7, fe80::/10, fec0::/10 and ff00::/8 at once.
  if ((a[0] & 0xE0) != 0x20) return false;
  if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0D && a[3] == 0xB8) return false;  // 2001:db8::/32
  if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x00 && a[3] == 0x00) return false;  // Teredo
  if (a[0] == 0x3F && a[1] == 0xFF && (a[2] & 0xF0) == 0x00) return false;         // 3fff::/20
  return true;
}

}  // namespace

absl::StatusOr<IpAddress> IpAddress::Parse(std::string_view text) {
  std::array<uint8_t, 4> v4;
  if (ParseDottedQuad(text, v4)) return FromIpv4Bytes(v4);
  std::array<uint8_t, 16> v6;
  if (text.find(':') != std::string_view::npos && ParseIpv6(text, v6)) return FromIpv6Bytes(v6);
  return absl::InvalidArgumentError(
      absl::StrCat(internal::Quoted(text), " is not an IPv4 or IPv6 address"));
}

IpAddress IpAddress::FromIpv4Bytes(const std::array<uint8_t, 4>& bytes) {
  std::array<uint8_t, 16> out{};
  std::copy(kMappedPrefix.begin(), kMappedPrefix.end(), out.begin());
  std::copy(bytes.begin(), bytes.end(), out.begin() + 12);
  return IpAddress(out);
}

IpAddress IpAddress::FromIpv6Bytes(const std::array<uint8_t, 16>& bytes) {
  // Stored as given: an IPv4-mapped address already is the IPv4 address's representation.
  return IpAddress(bytes);
}

bool IpAddress::is_ipv4() const { return HasPrefix(bytes_, kMappedPrefix); }

std::string IpAddress::ToString() const {
  if (is_ipv4()) {
    // Not inet_ntop(AF_INET), which goes through sprintf: the Gateway prints an anonymous
    // caller's address (its tenant) on every call.
    return absl::StrCat(static_cast<int>(bytes_[12]), ".", static_cast<int>(bytes_[13]), ".",
                        static_cast<int>(bytes_[14]), ".", static_cast<int>(bytes_[15]));
  }
  char text[INET6_ADDRSTRLEN];
  const char* written = inet_ntop(AF_INET6, bytes_.data(), text, sizeof(text));
  // inet_ntop fails only for a buffer too small or an unknown family, neither possible here.
  return written == nullptr ? std::string() : std::string(written);
}

bool IpAddress::IsUnspecified() const {
  if (is_ipv4())
    return std::all_of(bytes_.begin() + 12, bytes_.end(), [](uint8_t b) { return b == 0; });
  return std::all_of(bytes_.begin(), bytes_.end(), [](uint8_t b) { return b == 0; });
}

bool IpAddress::IsPublic() const {
  return is_ipv4() ? IsPublicIpv4(bytes_.data() + 12) : IsPublicIpv6(bytes_);
}

}  // namespace anyai::net
