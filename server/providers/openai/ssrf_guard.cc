#include "server/providers/openai/ssrf_guard.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/gateway/errors.h"
#include "server/gateway/validation.h"

namespace anyai::server {
namespace {

// `text` (IPv4 dotted quad or IPv6, no brackets, no zone) as 16 bytes, IPv4 mapped into
// ::ffff:0:0/96 so that one comparison serves both families.
bool ParseAddress(std::string_view text, std::array<uint8_t, 16>& out, bool* is_v4 = nullptr) {
  const std::string s(text);
  in_addr v4;
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    out.fill(0);
    out[10] = 0xff;
    out[11] = 0xff;
    std::memcpy(out.data() + 12, &v4, 4);
    if (is_v4 != nullptr) *is_v4 = true;
    return true;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::memcpy(out.data(), &v6, 16);
    if (is_v4 != nullptr) *is_v4 = false;
    return true;
  }
  return false;
}

bool PrefixMatches(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& b, int bits) {
  const int whole = bits / 8;
  if (std::memcmp(a.data(), b.data(), whole) != 0) return false;
  const int rest = bits % 8;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

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
    char text[INET6_ADDRSTRLEN] = {};
    const void* address = nullptr;
    if (ai->ai_family == AF_INET) {
      address = &reinterpret_cast<const sockaddr_in*>(ai->ai_addr)->sin_addr;
    } else if (ai->ai_family == AF_INET6) {
      address = &reinterpret_cast<const sockaddr_in6*>(ai->ai_addr)->sin6_addr;
    } else {
      continue;
    }
    if (inet_ntop(ai->ai_family, address, text, sizeof(text)) != nullptr &&
        std::find(addresses.begin(), addresses.end(), text) == addresses.end()) {
      addresses.emplace_back(text);
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
  std::vector<std::string> hosts;
  std::vector<Cidr> cidrs;
  for (size_t i = 0; i < allowlist.size(); ++i) {
    const std::string& entry = allowlist[i];
    const std::string at = absl::StrCat("ssrf_allowlist[", i, "]");
    const size_t slash = entry.find('/');
    const std::string address = entry.substr(0, slash);
    Cidr cidr;
    bool is_v4 = false;
    if (ParseAddress(address, cidr.bytes, &is_v4)) {
      const int max_bits = is_v4 ? 32 : 128;
      int bits = max_bits;
      if (slash != std::string::npos) {
        const std::string prefix = entry.substr(slash + 1);
        if (prefix.empty() || prefix.size() > 3 ||
            !std::all_of(prefix.begin(), prefix.end(),
                         [](char c) { return absl::ascii_isdigit(static_cast<uint8_t>(c)); }) ||
            !absl::SimpleAtoi(prefix, &bits) || bits > max_bits) {
          return absl::InvalidArgumentError(absl::StrCat(at, ": \"", QuoteForMessage(entry),
                                                         "\" has a prefix length outside [0, ",
                                                         max_bits, "]"));
        }
      }
      cidr.prefix_bits = is_v4 ? bits + 96 : bits;
      cidrs.push_back(cidr);
      continue;
    }
    if (slash != std::string::npos || entry.empty() ||
        entry.find_first_of(":[] @") != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ": \"", QuoteForMessage(entry), "\" is neither a host name nor a CIDR"));
    }
    hosts.push_back(absl::AsciiStrToLower(entry));
  }
  return SsrfGuard(std::move(hosts), std::move(cidrs), std::move(resolver));
}

bool SsrfGuard::InAllowedCidr(std::string_view address) const {
  std::array<uint8_t, 16> bytes;
  if (!ParseAddress(address, bytes)) return false;
  return std::any_of(cidrs_.begin(), cidrs_.end(), [&](const Cidr& cidr) {
    return PrefixMatches(bytes, cidr.bytes, cidr.prefix_bits);
  });
}

bool SsrfGuard::AllowsAddress(std::string_view address) const {
  return IsPublicAddress(address) || InAllowedCidr(address);
}

absl::Status SsrfGuard::CheckUrl(std::string_view url) const {
  absl::StatusOr<HttpUrl> parsed = ParseHttpUrl(url);
  if (!parsed.ok()) return RefuseUrl(std::string(parsed.status().message()));
  const std::string& host = parsed->host;
  std::string_view name = host;
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (std::find(hosts_.begin(), hosts_.end(), name) != hosts_.end()) return absl::OkStatus();

  const std::string quoted = absl::StrCat("\"", QuoteForMessage(host), "\"");
  if (parsed->host_is_ip) {
    if (AllowsAddress(host)) return absl::OkStatus();
    return RefuseUrl(absl::StrCat(
        "the host ", quoted,
        " is a private, loopback, link-local or otherwise non-public address, which the "
        "gateway does not reach"));
  }
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
