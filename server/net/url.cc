#include "server/net/url.h"

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/net/internal/authority.h"

namespace anyai::net {
namespace {

absl::Status BadUrl(absl::string_view why) { return absl::InvalidArgumentError(why); }

// RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
bool IsScheme(std::string_view s) {
  if (s.empty() || !absl::ascii_isalpha(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<Url> Url::Parse(std::string_view url) {
  for (char c : url) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7F) {
      return BadUrl("must be printable ASCII without spaces (percent-encode other characters)");
    }
    if (c == '\\') return BadUrl("must not contain a backslash");
  }
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos || !IsScheme(url.substr(0, scheme_end))) {
    return BadUrl("must be an absolute URL (scheme://host/...)");
  }
  Url out;
  out.scheme = absl::AsciiStrToLower(absl::string_view(url.data(), scheme_end));

  std::string_view rest = url.substr(scheme_end + 3);
  const size_t authority_end = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, authority_end);
  rest = authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  if (authority.find('@') != std::string_view::npos) {
    return BadUrl("must not contain user information (user:password@)");
  }
  absl::StatusOr<internal::Authority> parsed = internal::ParseAuthority(authority, /*min_port=*/1);
  if (!parsed.ok())
    return BadUrl(absl::StrCat("has a bad host or port: ", parsed.status().message()));
  out.host = std::move(parsed->host);
  if (parsed->port.has_value()) {
    out.port = *parsed->port;
  } else if (out.scheme == "http") {
    out.port = 80;
  } else if (out.scheme == "https") {
    out.port = 443;
  }

  if (const size_t hash = rest.find('#'); hash != std::string_view::npos) {
    out.fragment = std::string(rest.substr(hash + 1));
    rest = rest.substr(0, hash);
  }
  if (const size_t question = rest.find('?'); question != std::string_view::npos) {
    out.query = std::string(rest.substr(question + 1));
    rest = rest.substr(0, question);
  }
  out.path = std::string(rest);
  return out;
}

std::string Url::PathAndQuery() const {
  // Built with append: assigning a literal here trips GCC 12's -Wrestrict false positive at
  // -O3.
  std::string out;
  if (path.empty()) {
    out.push_back('/');
  } else {
    out.append(path);
  }
  if (query.has_value()) {
    out.push_back('?');
    out.append(*query);
  }
  return out;
}

}  // namespace anyai::net
