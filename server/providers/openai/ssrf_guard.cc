#include "server/providers/openai/ssrf_guard.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/gateway/errors.h"
#include "server/gateway/validation.h"
#include "server/net/allow_list.h"
#include "server/net/ip_address.h"
#include "server/net/url.h"

namespace anyai::server {
namespace {

absl::Status RefuseUrl(std::string why) { return InvalidField("url", std::move(why)); }

}  // namespace

absl::StatusOr<std::vector<std::string>> ResolveWithGetaddrinfo(const std::string& host) {
  addrinfo hints;
  std::memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* results = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &results);
  if (rc != 0) {
    const std::string why = gai_strerror(rc);
    if (rc == EAI_AGAIN || rc == EAI_SYSTEM || rc == EAI_MEMORY) {
      return absl::UnavailableError(absl::StrCat("resolving \"", host, "\": ", why));
    }
    return absl::NotFoundError(absl::StrCat("\"", host, "\" does not resolve: ", why));
  }
  std::vector<std::string> addresses;
  for (const addrinfo* ai = results; ai != nullptr; ai = ai->ai_next) {
    std::string text;
    if (ai->ai_family == AF_INET) {
      std::array<uint8_t, 4> bytes;
      const in_addr& a = reinterpret_cast<const sockaddr_in*>(ai->ai_addr)->sin_addr;
      std::memcpy(bytes.data(), &a, bytes.size());
      text = net::IpAddress::FromIpv4Bytes(bytes).ToString();
    } else if (ai->ai_family == AF_INET6) {
      std::array<uint8_t, 16> bytes;
      const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(ai->ai_addr)->sin6_addr;
      std::memcpy(bytes.data(), &a, bytes.size());
      text = net::IpAddress::FromIpv6Bytes(bytes).ToString();
    } else {
      continue;
    }
    if (std::find(addresses.begin(), addresses.end(), text) == addresses.end()) {
      addresses.push_back(std::move(text));
    }
  }
  freeaddrinfo(results);
  if (addresses.empty()) {
    return absl::NotFoundError(absl::StrCat("\"", host, "\" has no IP address"));
  }
  return addresses;
}

absl::StatusOr<SsrfGuard> SsrfGuard::Create(const std::vector<std::string>& allowlist,
                                            HostResolver resolver) {
  absl::StatusOr<net::AllowList> parsed = net::AllowList::Parse(allowlist, "ssrf_allowlist");
  if (!parsed.ok()) return parsed.status();
  return SsrfGuard(*std::move(parsed), std::move(resolver));
}

bool SsrfGuard::Allows(const net::IpAddress& address) const {
  return address.IsPublic() || allowlist_.Contains(address);
}

bool SsrfGuard::AllowsAddress(std::string_view address) const {
  const absl::StatusOr<net::IpAddress> ip = net::IpAddress::Parse(address);
  return ip.ok() && Allows(*ip);
}

absl::Status SsrfGuard::CheckUrl(std::string_view url) const {
  absl::StatusOr<net::Url> parsed = ParseHttpUrl(url);
  if (!parsed.ok()) return RefuseUrl(std::string(parsed.status().message()));
  const std::string& host = parsed->host.name;
  if (allowlist_.ContainsName(host)) return absl::OkStatus();

  const std::string quoted = absl::StrCat("\"", QuoteForMessage(host), "\"");
  if (parsed->host.address.has_value()) {
    if (Allows(*parsed->host.address)) return absl::OkStatus();
    return RefuseUrl(absl::StrCat(
        "the host ", quoted,
        " is a private, loopback, link-local or otherwise non-public address, which the "
        "gateway does not reach"));
  }
  std::string_view name = host;
  if (name.back() == '.') name.remove_suffix(1);
  absl::StatusOr<std::vector<std::string>> addresses = resolver_(std::string(name));
  if (!addresses.ok()) {
    if (absl::IsUnavailable(addresses.status())) {
      return absl::UnavailableError(
          absl::StrCat("url: could not resolve the host ", quoted, " just now; try again"));
    }
    return RefuseUrl(absl::StrCat("the host ", quoted, " does not resolve"));
  }
  if (addresses->empty()) {
    return RefuseUrl(absl::StrCat("the host ", quoted, " does not resolve"));
  }
  for (const std::string& address : *addresses) {
    if (!AllowsAddress(address)) {
      return RefuseUrl(absl::StrCat(
          "the host ", quoted,
          " resolves to a private, loopback, link-local or otherwise non-public address, "
          "which the gateway does not reach"));
    }
  }
  return absl::OkStatus();
}

}  // namespace anyai::server
