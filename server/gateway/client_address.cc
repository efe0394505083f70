#include "server/gateway/client_address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace anyai::server {
namespace {

// 16 bytes for IPv6; IPv4 mapped into ::ffff:0:0/96.
std::optional<std::array<uint8_t, 16>> ParseAddress(std::string_view text) {
  const std::string s(text);
  std::array<uint8_t, 16> out{};
  in_addr v4;
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    out[10] = out[11] = 0xff;
    std::memcpy(out.data() + 12, &v4, 4);
    return out;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::memcpy(out.data(), &v6, 16);
    return out;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> CanonicalAddress(std::string_view address) {
  const std::optional<std::array<uint8_t, 16>> bytes = ParseAddress(address);
  if (!bytes.has_value()) return std::nullopt;
  char text[INET6_ADDRSTRLEN];
  const bool v4 =
      std::all_of(bytes->begin(), bytes->begin() + 10, [](uint8_t b) { return b == 0; }) &&
      (*bytes)[10] == 0xff && (*bytes)[11] == 0xff;
  if (v4) {
    if (inet_ntop(AF_INET, bytes->data() + 12, text, sizeof(text)) == nullptr) return std::nullopt;
  } else if (inet_ntop(AF_INET6, bytes->data(), text, sizeof(text)) == nullptr) {
    return std::nullopt;
  }
  return std::string(text);
}

std::string AddressOfGrpcPeer(std::string_view peer_view) {
  // Debian's Abseil has its own string_view: convert once.
  absl::string_view peer(peer_view.data(), peer_view.size());
  if (absl::ConsumePrefix(&peer, "ipv4:")) {
    const size_t colon = peer.rfind(':');
    return std::string(colon == std::string_view::npos ? peer : peer.substr(0, colon));
  }
  if (absl::ConsumePrefix(&peer, "ipv6:")) {
    if (absl::ConsumePrefix(&peer, "[")) {
      const size_t close = peer.find(']');
      absl::string_view host = peer.substr(0, close);
      // Drop a zone ("%25eth0" as gRPC escapes it).
      host = host.substr(0, host.find('%'));
      // An IPv4-mapped address is the IPv4 client it stands for.
      absl::string_view rest = host;
      if (absl::ConsumePrefix(&rest, "::ffff:") && rest.find('.') != std::string_view::npos) {
        return std::string(rest);
      }
      return std::string(host);
    }
  }
  return std::string(peer);
}

absl::StatusOr<TrustedProxies> TrustedProxies::Create(const std::vector<std::string>& cidrs) {
  TrustedProxies t;
  for (size_t i = 0; i < cidrs.size(); ++i) {
    const std::string& cidr = cidrs[i];
    const std::pair<absl::string_view, absl::string_view> parts =
        absl::StrSplit(cidr, absl::MaxSplits('/', 1));
    std::optional<std::array<uint8_t, 16>> bytes =
        ParseAddress(std::string_view(parts.first.data(), parts.first.size()));
    const bool v4 = bytes.has_value() && parts.first.find(':') == absl::string_view::npos;
    int prefix = 128;
    if (!parts.second.empty() || cidr.find('/') != std::string::npos) {
      if (!absl::SimpleAtoi(parts.second, &prefix) || prefix < 0 || prefix > (v4 ? 32 : 128)) {
        bytes.reset();
      } else if (v4) {
        prefix += 96;
      }
    }
    if (!bytes.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("trusted_proxies[", i, "]: \"", cidr, "\" is not an address or CIDR"));
    }
    t.ranges_.push_back(Range{*bytes, prefix});
  }
  return t;
}

bool TrustedProxies::Contains(std::string_view address) const {
  if (ranges_.empty()) return false;
  const std::optional<std::array<uint8_t, 16>> a = ParseAddress(address);
  if (!a.has_value()) return false;
  for (const Range& r : ranges_) {
    int bits = r.prefix_bits;
    bool match = true;
    for (int i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
      const uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
      if (((*a)[i] & mask) != (r.bytes[i] & mask)) {
        match = false;
        break;
      }
    }
    if (match) return true;
  }
  return false;
}

std::string TrustedProxies::ClientAddress(std::string_view peer,
                                          std::string_view forwarded_for) const {
  std::string client = CanonicalAddress(peer).value_or(std::string(peer));
  if (forwarded_for.empty() || !Contains(peer)) return client;
  std::vector<absl::string_view> hops =
      absl::StrSplit(absl::string_view(forwarded_for.data(), forwarded_for.size()), ',');
  for (auto it = hops.rbegin(); it != hops.rend(); ++it) {
    const absl::string_view stripped = absl::StripAsciiWhitespace(*it);
    const std::string_view hop(stripped.data(), stripped.size());
    const std::optional<std::string> canonical = CanonicalAddress(hop);
    if (!canonical.has_value()) break;
    client = *canonical;
    if (!Contains(hop)) break;
  }
  return client;
}

}  // namespace anyai::server
