#include "server/net/internal/authority.h"

#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "server/net/host_port.h"

namespace anyai::net::internal {
namespace {

constexpr int kMaxPort = 65535;

std::optional<int> ParsePort(std::string_view text, int min_port) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  if (value < min_port || value > kMaxPort) return std::nullopt;
  return value;
}

}  // namespace

absl::StatusOr<Authority> ParseAuthority(std::string_view text, int min_port) {
  std::string_view host = text;
  std::optional<std::string_view> port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return absl::InvalidArgumentError("no closing ']'");
    host = text.substr(0, close + 1);
    const std::string_view after = text.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        return absl::InvalidArgumentError("text after the ']' is not :PORT");
      port = after.substr(1);
    }
  } else if (const size_t colon = text.find(':'); colon != std::string_view::npos) {
    if (text.find(':', colon + 1) != std::string_view::npos) {
      return absl::InvalidArgumentError(
          "more than one ':' (an IPv6 address must be in brackets: [::1]:8080)");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (host.empty()) return absl::InvalidArgumentError("no HOST");
  absl::StatusOr<Host> parsed = Host::Parse(host);
  if (!parsed.ok()) return parsed.status();
  Authority out{*std::move(parsed), std::nullopt};
  if (port.has_value()) {
    out.port = ParsePort(*port, min_port);
    if (!out.port.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the port must be a number in [", min_port, ", ", kMaxPort, "]"));
    }
  }
  return out;
}

}  // namespace anyai::net::internal
