// The connection caps of a front (SPEC §10, issue 12): at most `max_connections` connections
// open at once in all, and at most `max_connections_per_address` from one client address, so
// that one attacker address cannot take every place and no flood of idle connections runs the
// process out of descriptors. Both fronts count through it: the HTTP server (http_server.h)
// and the gRPC listener (grpc_acceptor.h; gRPC 1.51 has no such cap of its own).
//
//   net::ConnectionCaps caps(/*max_connections=*/4096, /*max_connections_per_address=*/64);
//   const std::string key = net::AddressKey(peer, /*ipv6_prefix_length=*/64);
//   if (!caps.TryAdmit(key, /*per_address_cap=*/!is_trusted_proxy)) { close(fd); return; }
//   ...                                // the connection lives
//   caps.Release(key);                 // once per admitted connection, with the same key
//
// A client address's key (AddressKey): an IPv4 address is itself ("203.0.113.7"), an
// IPv4-mapped IPv6 address counts as the IPv4 address it carries, and an IPv6 address counts
// as its network of `ipv6_prefix_length` bits ("2001:db8:1:2::/64"), since one host usually
// owns a whole /64 and could otherwise open a connection from each of its addresses.
//
// RaiseDescriptorLimit() lifts the process's soft open-file limit to its hard limit, so that
// the caps, not EMFILE, bound what the fronts hold; each front then lowers its total cap to
// fit the limit it reports.
//
// Thread safety: ConnectionCaps is thread-safe (one absl::Mutex); AddressKey and
// RaiseDescriptorLimit are free functions safe to call from any thread.
#ifndef ANYAI_SERVER_NET_CONNECTION_CAPS_H_
#define ANYAI_SERVER_NET_CONNECTION_CAPS_H_

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/net/ip_address.h"

namespace anyai::net {

class ConnectionCaps {
 public:
  // Both caps at least 1 (a smaller one is taken as 1).
  ConnectionCaps(int64_t max_connections, int64_t max_connections_per_address);

  ConnectionCaps(const ConnectionCaps&) = delete;
  ConnectionCaps& operator=(const ConnectionCaps&) = delete;

  // Counts a new connection from `key` if both caps allow it: true. False, and nothing
  // counted, if the total is full or (when `per_address_cap`) `key` already holds its share.
  // `per_address_cap` false: only the total cap applies (a trusted proxy's address, which
  // carries many clients).
  bool TryAdmit(const std::string& key, bool per_address_cap) ABSL_LOCKS_EXCLUDED(mu_);

  // Gives back the place of one connection TryAdmit admitted under `key`.
  void Release(const std::string& key) ABSL_LOCKS_EXCLUDED(mu_);

  // Connections counted now, in all and under `key`.
  int64_t open() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t open_from(const std::string& key) const ABSL_LOCKS_EXCLUDED(mu_);

  int64_t max_connections() const { return max_connections_; }
  int64_t max_connections_per_address() const { return max_connections_per_address_; }

 private:
  const int64_t max_connections_;
  const int64_t max_connections_per_address_;
  mutable absl::Mutex mu_;
  int64_t open_ ABSL_GUARDED_BY(mu_) = 0;
  // Only keys with at least one connection: the map is as large as the distinct peers.
  absl::flat_hash_map<std::string, int64_t> per_address_ ABSL_GUARDED_BY(mu_);
};

// The key a connection from `address` counts under (see above). `ipv6_prefix_length` is
// clamped to [0, 128].
std::string AddressKey(const IpAddress& address, int ipv6_prefix_length);

// The same for a peer as accept(2) or getpeername(2) report it: AF_INET or AF_INET6.
// INVALID_ARGUMENT for another family or a truncated address.
absl::StatusOr<std::string> AddressKey(const sockaddr* address, socklen_t length,
                                       int ipv6_prefix_length);

// The IP address of a sockaddr (AF_INET or AF_INET6; an IPv4-mapped one becomes IPv4), or
// INVALID_ARGUMENT.
absl::StatusOr<IpAddress> IpAddressOf(const sockaddr* address, socklen_t length);

// Raises the soft limit on open descriptors (RLIMIT_NOFILE) to the hard limit (as Go's
// runtime and nginx do) and returns the soft limit now in force (0: unknown; INT64_MAX:
// unlimited).
int64_t RaiseDescriptorLimit();

}  // namespace anyai::net

#endif  // ANYAI_SERVER_NET_CONNECTION_CAPS_H_
