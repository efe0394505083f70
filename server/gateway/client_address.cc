#include "server/gateway/client_address.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "server/net/cidr.h"
#include "server/net/connection_caps.h"
#include "server/net/host_port.h"
#include "server/net/ip_address.h"
#include "server/net/percent_decoding.h"

namespace anyai::server {
namespace {

bool ConsumePrefix(std::string_view& s, std::string_view prefix) {
  if (s.substr(0, prefix.size()) != prefix) return false;
  s.remove_prefix(prefix.size());
  return true;
}

}  // namespace

std::optional<std::string> CanonicalAddress(std::string_view address) {
  absl::StatusOr<net::IpAddress> ip = net::IpAddress::Parse(address);
  if (!ip.ok()) return std::nullopt;
  return ip->ToString();
}

std::string ClientNetwork(std::string_view address, int ipv6_prefix_length) {
  absl::StatusOr<net::IpAddress> ip = net::IpAddress::Parse(address);
  if (!ip.ok()) return std::string(address);
  // A whole IPv6 address is itself; any shorter network counts as the connection caps do.
  if (ip->is_ipv4() || ipv6_prefix_length >= 128) return ip->ToString();
  return net::AddressKey(*ip, ipv6_prefix_length);
}

std::string AddressOfGrpcPeer(std::string_view peer) {
  std::string_view rest = peer;
  if (!ConsumePrefix(rest, "ipv4:") && !ConsumePrefix(rest, "ipv6:")) return std::string(peer);
  // gRPC writes the peer as a URI ("ipv6:%5B::1%5D:54621"); a raw '%' (a zone) is read as is.
  std::string host_port = net::PercentDecode(rest).value_or(std::string(rest));
  // A link-local peer carries its zone inside the brackets ("[fe80::1%eth0]:5555"); the
  // client is the address.
  if (const size_t zone = host_port.find('%'); zone != std::string::npos) {
    const size_t close = host_port.find(']', zone);
    if (close != std::string::npos) host_port.erase(zone, close - zone);
  }
  absl::StatusOr<net::HostPort> parsed = net::HostPort::Parse(host_port);
  if (!parsed.ok() || !parsed->host.address.has_value()) return std::string(peer);
  return parsed->host.address->ToString();
}

absl::StatusOr<TrustedProxies> TrustedProxies::Create(const std::vector<std::string>& cidrs) {
  TrustedProxies t;
  for (size_t i = 0; i < cidrs.size(); ++i) {
    absl::StatusOr<net::Cidr> range = net::Cidr::Parse(cidrs[i]);
    if (!range.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("trusted_proxies[", i, "]: ", range.status().message()));
    }
    t.ranges_.push_back(*range);
  }
  return t;
}

bool TrustedProxies::Contains(std::string_view address) const {
  if (ranges_.empty()) return false;
  const absl::StatusOr<net::IpAddress> ip = net::IpAddress::Parse(address);
  return ip.ok() && Contains(*ip);
}

bool TrustedProxies::Contains(const net::IpAddress& address) const {
  return std::any_of(ranges_.begin(), ranges_.end(),
                     [&address](const net::Cidr& range) { return range.Contains(address); });
}

std::string TrustedProxies::ClientAddress(std::string_view peer,
                                          std::string_view forwarded_for) const {
  std::string client = CanonicalAddress(peer).value_or(std::string(peer));
  if (forwarded_for.empty() || !Contains(peer)) return client;
  std::vector<absl::string_view> hops =
      absl::StrSplit(absl::string_view(forwarded_for.data(), forwarded_for.size()), ',');
  for (auto it = hops.rbegin(); it != hops.rend(); ++it) {
    const absl::string_view stripped = absl::StripAsciiWhitespace(*it);
    const absl::StatusOr<net::IpAddress> hop =
        net::IpAddress::Parse(std::string_view(stripped.data(), stripped.size()));
    if (!hop.ok()) break;
    client = hop->ToString();
    if (!Contains(*hop)) break;
  }
  return client;
}

}  // namespace anyai::server
