#include "server/net/connection_caps.h"

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/net/ip_address.h"

namespace anyai::net {

ConnectionCaps::ConnectionCaps(int64_t max_connections, int64_t max_connections_per_address)
    : max_connections_(std::max<int64_t>(1, max_connections)),
      max_connections_per_address_(std::max<int64_t>(1, max_connections_per_address)) {}

bool ConnectionCaps::TryAdmit(const std::string& key, bool per_address_cap) {
  absl::MutexLock lock(&mu_);
  if (open_ >= max_connections_) return false;
  auto it = per_address_.find(key);
  const int64_t from_key = it == per_address_.end() ? 0 : it->second;
  if (per_address_cap && from_key >= max_connections_per_address_) return false;
  if (it == per_address_.end()) {
    per_address_.emplace(key, 1);
  } else {
    ++it->second;
  }
  ++open_;
  return true;
}

void ConnectionCaps::Release(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = per_address_.find(key);
  // A key never admitted changes nothing: the total stays the sum of the per-key counts.
  if (it == per_address_.end()) return;
  --open_;
  if (--it->second <= 0) per_address_.erase(it);
}

int64_t ConnectionCaps::open() const {
  absl::MutexLock lock(&mu_);
  return open_;
}

int64_t ConnectionCaps::open_from(const std::string& key) const {
  absl::MutexLock lock(&mu_);
  auto it = per_address_.find(key);
  return it == per_address_.end() ? 0 : it->second;
}

std::string AddressKey(const IpAddress& address, int ipv6_prefix_length) {
  if (address.is_ipv4()) return address.ToString();
  std::array<uint8_t, 16> bytes = address.bytes();
  const int prefix = std::clamp(ipv6_prefix_length, 0, 128);
  for (int bit = prefix; bit < 128; ++bit) {
    bytes[static_cast<size_t>(bit / 8)] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  }
  // Not IPv4-mapped after masking: the original was not (that is folded at parse), and
  // masking only clears bits past a prefix that, were it to keep ::ffff:0:0/96, would have
  // made the original IPv4-mapped.
  return absl::StrCat(IpAddress::FromIpv6Bytes(bytes).ToString(), "/", prefix);
}

absl::StatusOr<IpAddress> IpAddressOf(const sockaddr* address, socklen_t length) {
  if (address != nullptr && address->sa_family == AF_INET && length >= sizeof(sockaddr_in)) {
    sockaddr_in in{};
    std::memcpy(&in, address, sizeof(in));
    std::array<uint8_t, 4> bytes{};
    std::memcpy(bytes.data(), &in.sin_addr, bytes.size());
    return IpAddress::FromIpv4Bytes(bytes);
  }
  if (address != nullptr && address->sa_family == AF_INET6 && length >= sizeof(sockaddr_in6)) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, address, sizeof(in6));
    std::array<uint8_t, 16> bytes{};
    std::memcpy(bytes.data(), &in6.sin6_addr, bytes.size());
    return IpAddress::FromIpv6Bytes(bytes);
  }
  return absl::InvalidArgumentError("not an IPv4 or IPv6 socket address");
}

absl::StatusOr<std::string> AddressKey(const sockaddr* address, socklen_t length,
                                       int ipv6_prefix_length) {
  absl::StatusOr<IpAddress> ip = IpAddressOf(address, length);
  if (!ip.ok()) return ip.status();
  return AddressKey(*ip, ipv6_prefix_length);
}

int64_t RaiseDescriptorLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  if (limit.rlim_cur == RLIM_INFINITY) return std::numeric_limits<int64_t>::max();
  return static_cast<int64_t>(limit.rlim_cur);
}

}  // namespace anyai::net
