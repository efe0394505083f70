// The SSRF rule of SPEC §5 for user-supplied URLs (the vision endpoint's image URL): a URL
// whose host is, or resolves to, an address in private, loopback, link-local or other
// non-public space (net::IpAddress::IsPublic in server/net/ip_address.h says which) is refused,
// unless the config's `ssrf_allowlist` (a net::AllowList) names the host or a CIDR that holds
// the address.
//
//   absl::StatusOr<SsrfGuard> guard = SsrfGuard::Create(config.ssrf_allowlist());
//   if (absl::Status s = guard->CheckUrl(request.url()); !s.ok()) return s;
//
// The rule, for a URL that ParseHttpUrl accepts:
//   - A host on the allow-list (exact, case-insensitive; "images.internal" does not cover
//     "a.images.internal") passes without a look-up.
//   - An IP literal host passes when it is public or inside an allow-listed CIDR.
//     IPv4-mapped IPv6 (::ffff:10.0.0.1) is judged as the IPv4 address it carries, both by
//     IsPublic and by the CIDRs.
//   - A name is resolved (getaddrinfo) and passes only when EVERY address it resolves to
//     passes as above. One private address among public ones is enough to refuse: a fetcher
//     may pick any of them, and mixing in an internal address is what a rebinding attacker
//     does. A name that does not resolve is refused too (INVALID_ARGUMENT); a temporary
//     resolver failure is UNAVAILABLE.
// Refusals are INVALID_ARGUMENT with a BadRequest violation on the field "url" (errors.h), so
// the fronts report them as the request's fault, naming the field. They never say which
// address a name resolved to: the gateway must not become an oracle for internal DNS.
//
// What this does not do: the check is made on the address our resolver sees now; whoever
// fetches the URL later (for the openai provider, the upstream) resolves it again, and a
// redirect from a public URL may lead elsewhere. The gateway itself never fetches these URLs.
//
// Thread-safe: immutable after Create; CheckUrl may run concurrently. The default resolver
// blocks the calling thread for the duration of getaddrinfo.
#ifndef ANYAI_SERVER_PROVIDERS_OPENAI_SSRF_GUARD_H_
#define ANYAI_SERVER_PROVIDERS_OPENAI_SSRF_GUARD_H_

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/net/allow_list.h"
#include "server/net/ip_address.h"

namespace anyai::server {

// Resolves a host name to its addresses as text ("10.0.0.1", "::1"). NOT_FOUND when the name
// does not exist, UNAVAILABLE when the resolver failed for now.
using HostResolver = std::function<absl::StatusOr<std::vector<std::string>>(const std::string&)>;

// The system resolver: getaddrinfo with AF_UNSPEC.
absl::StatusOr<std::vector<std::string>> ResolveWithGetaddrinfo(const std::string& host);

class SsrfGuard {
 public:
  // `allowlist`: host names and CIDRs ("images.internal", "192.168.0.0/16", "::1/128"; a bare
  // address is a /32 or /128), as ServerConfig.ssrf_allowlist: net::AllowList::Parse, which
  // ValidateConfig calls too. INVALID_ARGUMENT naming the first bad entry
  // ("ssrf_allowlist[1]: ...").
  static absl::StatusOr<SsrfGuard> Create(const std::vector<std::string>& allowlist,
                                          HostResolver resolver = &ResolveWithGetaddrinfo);
  template <typename Container>
  static absl::StatusOr<SsrfGuard> Create(const Container& allowlist,
                                          HostResolver resolver = &ResolveWithGetaddrinfo) {
    return Create(std::vector<std::string>(allowlist.begin(), allowlist.end()),
                  std::move(resolver));
  }

  // OK when `url` may be handed to a fetcher; see the rule above.
  absl::Status CheckUrl(std::string_view url) const;

  // OK when the address (IPv4 or IPv6 text) is public or allow-listed; false for text that is
  // not an address.
  bool AllowsAddress(std::string_view address) const;

 private:
  SsrfGuard(net::AllowList allowlist, HostResolver resolver)
      : allowlist_(std::move(allowlist)), resolver_(std::move(resolver)) {}

  bool Allows(const net::IpAddress& address) const;

  net::AllowList allowlist_;
  HostResolver resolver_;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_PROVIDERS_OPENAI_SSRF_GUARD_H_
