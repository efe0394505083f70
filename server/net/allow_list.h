// A list of host names and address ranges that a policy lets through, as the config's
// `ssrf_allowlist` writes one: "images.internal", "192.168.0.0/16", "::1" (a bare address is a
// range of one). The SSRF guard (server/providers/openai/ssrf_guard.h) is its user; the config
// validates its list with the same Parse, so the rule for an entry is written once.
//
//   absl::StatusOr<net::AllowList> allow = net::AllowList::Parse(entries, "ssrf_allowlist");
//   allow->ContainsName("Images.Internal.");                // true: case and a final dot aside
//   allow->Contains(*net::IpAddress::Parse("192.168.7.7"));  // true
//
// A name matches exactly: "images.internal" does not cover "a.images.internal".
//
// Thread safety: immutable after Parse; share it freely.
#ifndef ANYAI_SERVER_NET_ALLOW_LIST_H_
#define ANYAI_SERVER_NET_ALLOW_LIST_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/net/cidr.h"
#include "server/net/ip_address.h"

namespace anyai::net {

class AllowList {
 public:
  // Each entry a host name (IsHostName in host_port.h) or a CIDR (Cidr::Parse). INVALID_ARGUMENT
  // naming the first bad entry as `list_name[i]`: `ssrf_allowlist[1]: "10.0.0.0/33" is not a
  // CIDR: the prefix length must be in [0, 32]`.
  static absl::StatusOr<AllowList> Parse(const std::vector<std::string>& entries,
                                         std::string_view list_name);

  // An empty list: nothing is allowed.
  AllowList() = default;

  // `host` (a host name, any case, with or without a trailing dot) is one of the names.
  bool ContainsName(std::string_view host) const;

  // `address` is in one of the ranges.
  bool Contains(const IpAddress& address) const;

 private:
  std::vector<std::string> names_;  // lower case, without a trailing dot
  std::vector<Cidr> ranges_;
};

}  // namespace anyai::net

#endif  // ANYAI_SERVER_NET_ALLOW_LIST_H_
