#include "server/net/allow_list.h"

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/net/cidr.h"
#include "server/net/host_port.h"
#include "server/net/internal/quote.h"
#include "server/net/ip_address.h"

namespace anyai::net {
namespace {

// Lower case, without one trailing dot: the form names are compared in.
std::string NameKey(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  return absl::AsciiStrToLower(absl::string_view(name.data(), name.size()));
}

}  // namespace

absl::StatusOr<AllowList> AllowList::Parse(const std::vector<std::string>& entries,
                                           std::string_view list_name) {
  AllowList out;
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string& entry = entries[i];
    if (IsHostName(entry)) {
      out.names_.push_back(NameKey(entry));
      continue;
    }
    absl::StatusOr<Cidr> range = Cidr::Parse(entry);
    if (range.ok()) {
      out.ranges_.push_back(*range);
      continue;
    }
    const std::string at =
        absl::StrCat(absl::string_view(list_name.data(), list_name.size()), "[", i, "]: ");
    // An address with a bad prefix length is a CIDR gone wrong: say what is wrong with it.
    if (IpAddress::Parse(std::string_view(entry).substr(0, entry.find('/'))).ok()) {
      return absl::InvalidArgumentError(absl::StrCat(at, range.status().message()));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(at, internal::Quoted(entry),
                     " is neither a host name nor a CIDR (e.g. images.internal or 10.0.0.0/8)"));
  }
  return out;
}

bool AllowList::ContainsName(std::string_view host) const {
  if (names_.empty()) return false;
  const std::string key = NameKey(host);
  return std::find(names_.begin(), names_.end(), key) != names_.end();
}

bool AllowList::Contains(const IpAddress& address) const {
  return std::any_of(ranges_.begin(), ranges_.end(),
                     [&address](const Cidr& range) { return range.Contains(address); });
}

}  // namespace anyai::net
