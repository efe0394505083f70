#include "server/net/host_port.h"

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/net/internal/authority.h"
#include "server/net/internal/quote.h"
#include "server/net/ip_address.h"

namespace anyai::net {
namespace {

bool IsDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

std::string_view WithoutTrailingDot(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  return s;
}

// The last label is all digits or hexadecimal-looking: text an IPv4 parser (inet_aton and
// resolvers built on it) may read as an address.
bool HasNumericLastLabel(std::string_view s) {
  s = WithoutTrailingDot(s);
  const size_t dot = s.rfind('.');
  const std::string_view last = dot == std::string_view::npos ? s : s.substr(dot + 1);
  return IsDigits(last) ||
         (last.size() >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X'));
}

std::string Lower(std::string_view s) {
  return absl::AsciiStrToLower(absl::string_view(s.data(), s.size()));
}

}  // namespace

bool IsHostName(std::string_view name) {
  name = WithoutTrailingDot(name);
  if (name.empty() || name.size() > 253 || HasNumericLastLabel(name)) return false;
  size_t start = 0;
  for (size_t i = 0; i <= name.size(); ++i) {
    if (i < name.size() && name[i] != '.') {
      const unsigned char c = static_cast<unsigned char>(name[i]);
      if (!absl::ascii_isalnum(c) && c != '-' && c != '_') return false;
      continue;
    }
    const std::string_view label = name.substr(start, i - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    start = i + 1;
  }
  return true;
}

absl::StatusOr<Host> Host::Parse(std::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("no host");
  if (text.front() == '[') {
    const std::string_view inner =
        text.size() >= 2 && text.back() == ']' ? text.substr(1, text.size() - 2) : "";
    absl::StatusOr<IpAddress> address = IpAddress::Parse(inner);
    if (inner.find(':') == std::string_view::npos || !address.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(internal::Quoted(text), " is not an IPv6 address in brackets"));
    }
    return Host{Lower(inner), *address};
  }
  if (text.find(':') != std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        internal::Quoted(text), " has a ':': an IPv6 address must be in brackets ([::1])"));
  }
  if (HasNumericLastLabel(text)) {
    const std::string_view quad = WithoutTrailingDot(text);
    absl::StatusOr<IpAddress> address = IpAddress::Parse(quad);
    if (!address.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(internal::Quoted(text), " is numeric but not a dotted-quad IPv4 address"));
    }
    return Host{std::string(quad), *address};
  }
  if (!IsHostName(text)) {
    return absl::InvalidArgumentError(absl::StrCat(internal::Quoted(text), " is not a host name"));
  }
  return Host{Lower(text), std::nullopt};
}

std::string Host::ToString() const {
  return name.find(':') == std::string::npos ? name : absl::StrCat("[", name, "]");
}

absl::StatusOr<HostPort> HostPort::Parse(std::string_view text) {
  const auto not_host_port = [text](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        internal::Quoted(text), " is not HOST:PORT (e.g. 0.0.0.0:8080 or [::]:8080): ", why));
  };
  absl::StatusOr<internal::Authority> authority = internal::ParseAuthority(text, /*min_port=*/0);
  if (!authority.ok()) return not_host_port(authority.status().message());
  if (!authority->port.has_value()) return not_host_port("no ':PORT'");
  return HostPort{std::move(authority->host), *authority->port};
}

std::string HostPort::ToString() const { return absl::StrCat(host.ToString(), ":", port); }

}  // namespace anyai::net
