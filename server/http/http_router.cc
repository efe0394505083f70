#include "server/http/http_router.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace anyai::server {
namespace {

bool PathMatches(std::string_view pattern, std::string_view path) {
  if (pattern.ends_with("/*")) {
    const std::string_view prefix = pattern.substr(0, pattern.size() - 1);  // keeps the '/'
    if (!path.starts_with(prefix)) return false;
    const std::string_view rest = path.substr(prefix.size());
    return !rest.empty() && rest.find('/') == std::string_view::npos;
  }
  return pattern == path;
}

}  // namespace

std::string_view WithoutV1(std::string_view path) {
  if (path == "/v1") return "/";
  if (path.starts_with("/v1/")) path.remove_prefix(3);
  return path;
}

absl::Status HttpRouter::Add(std::string method, std::string path, HttpHandler handler,
                             Dispatch dispatch) {
  if (!path.starts_with("/") || path.starts_with("/v1/") || path == "/v1") {
    return absl::InvalidArgumentError(
        absl::StrCat("http route \"", path, "\": must start with '/' and not with \"/v1\""));
  }
  for (const Route& r : routes_) {
    if (r.method == method && r.path == path) {
      return absl::InvalidArgumentError(
          absl::StrCat("http route ", method, " ", path, " is already routed"));
    }
  }
  routes_.push_back(Route{std::move(method), std::move(path), std::move(handler), dispatch});
  return absl::OkStatus();
}

HttpRouter::Match HttpRouter::Find(std::string_view method, std::string_view path) const {
  path = WithoutV1(path);
  Match match;
  std::vector<std::string> allowed;
  for (const Route& r : routes_) {
    if (!PathMatches(r.path, path)) continue;
    if (r.method == method) {
      match.route = &r;
      return match;
    }
    allowed.push_back(r.method);
  }
  if (!allowed.empty()) {
    match.status = 405;
    match.allow = absl::StrJoin(allowed, ", ");
  }
  return match;
}

}  // namespace anyai::server
