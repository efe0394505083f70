#include "server/http/http_query.h"

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/gateway/errors.h"
#include "server/net/percent_decoding.h"

namespace anyai::server {
namespace {

absl::StatusOr<std::string> FormDecode(std::string_view text, std::string_view what) {
  std::optional<std::string> decoded = net::PercentDecode(text, net::PlusIs::kSpace);
  if (!decoded.has_value()) {
    return InvalidField(std::string(what), "malformed %-escape in the query string");
  }
  return *std::move(decoded);
}

// The known parameters of one endpoint, each given at most once; empty values are absent.
class Params {
 public:
  static absl::StatusOr<Params> Parse(std::string_view query,
                                      std::initializer_list<std::string_view> known) {
    absl::StatusOr<std::vector<std::pair<std::string, std::string>>> pairs = DecodeQuery(query);
    if (!pairs.ok()) return pairs.status();
    Params params;
    for (auto& [name, value] : *pairs) {
      bool is_known = false;
      for (std::string_view k : known) is_known = is_known || k == name;
      if (!is_known) continue;
      if (params.seen_.contains(name)) {
        return InvalidField(name, "given more than once in the query string");
      }
      params.seen_.insert({name, true});
      if (!value.empty()) params.values_[name] = std::move(value);
    }
    return params;
  }

  std::optional<std::string> Get(std::string_view name) const {
    auto it = values_.find(std::string(name));
    if (it == values_.end()) return std::nullopt;
    return it->second;
  }

  // A decimal integer in [min, max]: "-?[0-9]+".
  absl::Status Integer(std::string_view name, int64_t min, int64_t max,
                       std::optional<int64_t>* out) const {
    std::optional<std::string> text = Get(name);
    if (!text.has_value()) return absl::OkStatus();
    const std::string field(name);
    std::string_view digits = *text;
    const bool negative = !digits.empty() && digits.front() == '-';
    if (negative) digits.remove_prefix(1);
    const auto not_an_integer = [&] {
      return InvalidField(
          field, absl::StrCat("must be an integer, got \"", QuoteForMessage(*text, 40), "\""));
    };
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos) {
      return not_an_integer();
    }
    const auto out_of_range = [&] {
      return InvalidField(field, absl::StrCat("must be an integer in [", min, ", ", max, "], got ",
                                              QuoteForMessage(*text, 40)));
    };
    if (digits.size() > 19) return out_of_range();
    uint64_t magnitude = 0;
    for (char c : digits) magnitude = magnitude * 10 + static_cast<uint64_t>(c - '0');
    if (negative && magnitude != 0) {
      // -magnitude >= min, written so that min = INT64_MIN does not overflow.
      if (min >= 0 || magnitude - 1 > static_cast<uint64_t>(-(min + 1))) return out_of_range();
      *out = -static_cast<int64_t>(magnitude - 1) - 1;
    } else {
      if (max < 0 || magnitude > static_cast<uint64_t>(max)) return out_of_range();
      if (static_cast<int64_t>(magnitude) < min) return out_of_range();
      *out = static_cast<int64_t>(magnitude);
    }
    return absl::OkStatus();
  }

  absl::Status Int32(std::string_view name, std::optional<int32_t>* out) const {
    std::optional<int64_t> x;
    if (absl::Status s = Integer(name, std::numeric_limits<int32_t>::min(),
                                 std::numeric_limits<int32_t>::max(), &x);
        !s.ok()) {
      return s;
    }
    if (x.has_value()) *out = static_cast<int32_t>(*x);
    return absl::OkStatus();
  }

 private:
  absl::flat_hash_map<std::string, bool> seen_;
  absl::flat_hash_map<std::string, std::string> values_;
};

}  // namespace

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> DecodeQuery(
    std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  for (absl::string_view piece :
       absl::StrSplit(absl::string_view(query.data(), query.size()), '&', absl::SkipEmpty())) {
    const std::string_view part(piece.data(), piece.size());
    const size_t eq = part.find('=');
    const std::string_view raw_name = part.substr(0, eq);
    const std::string_view raw_value =
        eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1);
    absl::StatusOr<std::string> name = FormDecode(raw_name, "query");
    if (!name.ok()) return name.status();
    absl::StatusOr<std::string> value = FormDecode(raw_value, QuoteForMessage(*name, 64));
    if (!value.ok()) return value.status();
    out.emplace_back(*std::move(name), *std::move(value));
  }
  return out;
}

absl::StatusOr<v1::ImagineRequest> ImagineRequestFromQuery(std::string_view query) {
  absl::StatusOr<Params> p = Params::Parse(
      query, {"prompt", "negative_prompt", "width", "height", "steps", "seed", "model"});
  if (!p.ok()) return p.status();
  v1::ImagineRequest request;
  if (auto v = p->Get("prompt")) request.set_prompt(*v);
  if (auto v = p->Get("negative_prompt")) request.set_negative_prompt(*v);
  if (auto v = p->Get("model")) request.set_model(*v);
  std::optional<int32_t> width, height, steps;
  std::optional<int64_t> seed;
  for (auto [name, slot] :
       {std::pair{"width", &width}, std::pair{"height", &height}, std::pair{"steps", &steps}}) {
    if (absl::Status s = p->Int32(name, slot); !s.ok()) return s;
  }
  if (absl::Status s = p->Integer("seed", std::numeric_limits<int64_t>::min(),
                                  std::numeric_limits<int64_t>::max(), &seed);
      !s.ok()) {
    return s;
  }
  if (width.has_value()) request.set_width(*width);
  if (height.has_value()) request.set_height(*height);
  if (steps.has_value()) request.set_steps(*steps);
  if (seed.has_value()) request.set_seed(*seed);
  return request;
}

absl::StatusOr<v1::AskRequest> AskRequestFromQuery(std::string_view query) {
  absl::StatusOr<Params> p = Params::Parse(query, {"prompt"});
  if (!p.ok()) return p.status();
  v1::AskRequest request;
  if (auto v = p->Get("prompt")) request.set_prompt(*v);
  return request;
}

absl::StatusOr<v1::DescribeImageRequest> DescribeImageRequestFromQuery(std::string_view query) {
  absl::StatusOr<Params> p = Params::Parse(query, {"url", "model"});
  if (!p.ok()) return p.status();
  v1::DescribeImageRequest request;
  if (auto v = p->Get("url")) request.set_url(*v);
  if (auto v = p->Get("model")) request.set_model(*v);
  return request;
}

absl::StatusOr<std::string> CheckKeyFromQuery(std::string_view query) {
  absl::StatusOr<Params> p = Params::Parse(query, {"key"});
  if (!p.ok()) return p.status();
  return p->Get("key").value_or("");
}

}  // namespace anyai::server
