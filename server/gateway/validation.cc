#include "server/gateway/validation.h"

#include <arpa/inet.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "anyai/v1/anyai.pb.h"
#include "server/gateway/catalogue.h"
#include "server/gateway/errors.h"
#include "server/gateway/text.h"

namespace anyai::server {
namespace {

constexpr char kSystemRole[] = "system";
constexpr char kUserRole[] = "user";
constexpr char kAssistantRole[] = "assistant";
constexpr char kPlutoOnly[] = "pluto accepts only prompt and negative_prompt";

// The sizes OpenAI's image models take; see the header for which model takes which.
constexpr std::string_view kDallE2Sizes[] = {"256x256", "512x512", "1024x1024"};
constexpr std::string_view kDallE3Sizes[] = {"1024x1024", "1792x1024", "1024x1792"};
constexpr std::string_view kAllImageSizes[] = {"256x256", "512x512", "1024x1024", "1792x1024",
                                               "1024x1792"};

template <size_t N>
bool OneOf(std::string_view value, const std::string_view (&choices)[N]) {
  for (std::string_view c : choices) {
    if (value == c) return true;
  }
  return false;
}

template <size_t N>
std::string ListOf(const std::string_view (&choices)[N]) {
  std::string out;
  for (size_t i = 0; i < N; ++i) {
    if (i > 0) out += (i + 1 == N) ? " or " : ", ";
    absl::StrAppend(&out, "\"", std::string(choices[i]), "\"");
  }
  return out;
}

// Collects the violations of one request, in field order, up to kMaxViolations.
class Violations {
 public:
  void Add(std::string field, std::string description) {
    if (list_.size() < kMaxViolations) list_.push_back({std::move(field), std::move(description)});
  }
  bool empty() const { return list_.empty(); }
  absl::Status ToStatus() && { return InvalidRequest(std::move(list_)); }

 private:
  std::vector<FieldViolation> list_;
};

// The check of every user-supplied text (SPEC §2): well-formed UTF-8 and at most
// `max_chars` code points; non-empty when `required`. `field` is built only on failure.
template <typename FieldName>
void CheckText(const FieldName& field, std::string_view text, int64_t max_chars, bool required,
               Violations& violations) {
  if (text.empty()) {
    if (required) violations.Add(field(), "required");
    return;
  }
  absl::StatusOr<int64_t> chars = CountCodePoints(text);
  if (!chars.ok()) {
    violations.Add(field(), std::string(chars.status().message()));
    return;
  }
  if (*chars > max_chars) {
    violations.Add(field(), absl::StrCat(*chars, " characters (Unicode code points), more than ",
                                         "the plan's limit of ", max_chars));
  }
}

std::string Named(const char* name) { return name; }

void CheckIntRange(const char* field, int64_t value, int64_t lo, int64_t hi,
                   Violations& violations) {
  if (value < lo || value > hi) {
    violations.Add(field, absl::StrCat("must be between ", lo, " and ", hi, ", got ", value));
  }
}

void CheckDoubleRange(const char* field, double value, double lo, double hi,
                      Violations& violations) {
  if (!std::isfinite(value)) {
    violations.Add(field, "must be a finite number");
  } else if (value < lo || value > hi) {
    violations.Add(field, absl::StrCat("must be between ", lo, " and ", hi, ", got ", value));
  }
}

// Checks `model` against an endpoint's list. Returns the error to report when nothing else is
// wrong (UnknownModel), or OK.
absl::Status CheckEndpointModel(std::string_view model, const EndpointModels& models) {
  if (model.empty() || models.Contains(model)) return absl::OkStatus();
  return UnknownModel("model", std::string(model));
}

absl::Status Finish(Violations violations, absl::Status model_status) {
  if (!violations.empty()) return std::move(violations).ToStatus();
  return model_status;
}

// ---- URLs and addresses ----

bool IsDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// A canonical dotted quad: four decimal octets 0..255 without leading zeros.
bool ParseCanonicalIpv4(std::string_view s, uint8_t out[4]) {
  int octet = 0;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i < s.size() && s[i] != '.') continue;
    std::string_view part = s.substr(start, i - start);
    if (octet == 4 || !IsDigits(part) || part.size() > 3 || (part.size() > 1 && part[0] == '0')) {
      return false;
    }
    int value = 0;
    for (char c : part) value = value * 10 + (c - '0');
    if (value > 255) return false;
    out[octet++] = static_cast<uint8_t>(value);
    start = i + 1;
  }
  return octet == 4;
}

bool ParseIpv6(std::string_view s, uint8_t out[16]) {
  if (s.empty() || s.size() > 45) return false;
  char buffer[46];
  std::memcpy(buffer, s.data(), s.size());
  buffer[s.size()] = '\0';
  return inet_pton(AF_INET6, buffer, out) == 1;
}

bool IsPublicIpv4(const uint8_t a[4]) {
  const uint32_t ip =
      (uint32_t{a[0]} << 24) | (uint32_t{a[1]} << 16) | (uint32_t{a[2]} << 8) | uint32_t{a[3]};
  struct Range {
    uint32_t prefix;
    int bits;
  };
  static constexpr Range kNotPublic[] = {
      {0x00000000, 8},   // 0.0.0.0/8 "this network"
      {0x0A000000, 8},   // 10.0.0.0/8 private
      {0x64400000, 10},  // 100.64.0.0/10 carrier-grade NAT
      {0x7F000000, 8},   // 127.0.0.0/8 loopback
      {0xA9FE0000, 16},  // 169.254.0.0/16 link-local
      {0xAC100000, 12},  // 172.16.0.0/12 private
      {0xC0000000, 24},  // 192.0.0.0/24 IETF protocol assignments
      {0xC0000200, 24},  // 192.0.2.0/24 documentation
      {0xC0586300, 24},  // 192.88.99.0/24 6to4 relay anycast
      {0xC0A80000, 16},  // 192.168.0.0/16 private
      {0xC6120000, 15},  // 198.18.0.0/15 benchmarking
      {0xC6336400, 24},  // 198.51.100.0/24 documentation
      {0xCB007100, 24},  // 203.0.113.0/24 documentation
      {0xE0000000, 4},   // 224.0.0.0/4 multicast
      {0xF0000000, 4},   // 240.0.0.0/4 reserved, and 255.255.255.255 broadcast
  };
  for (const Range& r : kNotPublic) {
    const uint32_t mask = ~uint32_t{0} << (32 - r.bits);
    if ((ip & mask) == r.prefix) return false;
  }
  return true;
}

bool IsPublicIpv6(const uint8_t a[16]) {
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
  static constexpr uint8_t kNat64Prefix[12] = {0, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0};
  if (std::memcmp(a, kMappedPrefix, 12) == 0 || std::memcmp(a, kNat64Prefix, 12) == 0) {
    return IsPublicIpv4(a + 12);
  }
  if (a[0] == 0x20 && a[1] == 0x02) return IsPublicIpv4(a + 2);  // 6to4 2002::/16
  // Everything public is in global unicast 2000::/3: this excludes ::, ::1, IPv4-compatible
  // ::/96, 64:ff9b:1::/48, 100::/64, fc00::/7, fe80::/10, fec0::/10 and ff00::/8 at once.
  if ((a[0] & 0xE0) != 0x20) return false;
  if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0D && a[3] == 0xB8) return false;  // 2001:db8::/32
  if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x00 && a[3] == 0x00) return false;  // Teredo
  if (a[0] == 0x3F && a[1] == 0xFF && (a[2] & 0xF0) == 0x00) return false;         // 3fff::/20
  return true;
}

absl::Status BadUrl(std::string description) {
  return absl::InvalidArgumentError(std::move(description));
}

// A DNS name as ParseHttpUrl accepts it (already lower case).
bool IsDnsName(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (host.empty() || host.size() > 253) return false;
  size_t start = 0;
  for (size_t i = 0; i <= host.size(); ++i) {
    if (i < host.size() && host[i] != '.') {
      const char c = host[i];
      const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      if (!ok) return false;
      continue;
    }
    const std::string_view label = host.substr(start, i - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    start = i + 1;
  }
  return true;
}

}  // namespace

absl::StatusOr<const ModelInfo*> ValidateChatCompletion(
    const anyai::v1::ChatCompletionRequest& request, const Catalogue& catalogue,
    int64_t max_message_chars, int max_messages) {
  Violations violations;
  const ModelInfo* model = nullptr;
  if (request.model().empty()) {
    violations.Add("model", "required");
  } else {
    model = catalogue.Find(request.model());
  }

  const int count = request.messages_size();
  if (count == 0) {
    violations.Add("messages", "at least one message is required");
  } else if (count > max_messages) {
    // The messages themselves are not looked at: the request is refused anyway, cheaply.
    violations.Add("messages",
                   absl::StrCat(count, " messages, more than the ", max_messages, " allowed"));
  } else {
    for (int i = 0; i < count; ++i) {
      const anyai::v1::ChatMessage& message = request.messages(i);
      const std::string& role = message.role();
      auto field = [i](const char* name) { return absl::StrCat("messages[", i, "].", name); };
      bool content_required = true;
      if (role == kSystemRole) {
        if (i != 0) {
          violations.Add(field("role"), "a system message is allowed only as the first message");
        }
      } else if (role == kAssistantRole) {
        content_required = false;  // OpenAI allows an empty assistant turn
      } else if (role != kUserRole) {
        violations.Add(field("role"),
                       role.empty() ? std::string(R"(required: "system", "user" or "assistant")")
                                    : absl::StrCat(R"(must be "system", "user" or "assistant", )",
                                                   "got \"", QuoteForMessage(role), "\""));
      }
      CheckText([&] { return field("content"); }, message.content(), max_message_chars,
                content_required, violations);
    }
  }

  if (request.has_max_tokens()) {
    CheckIntRange("max_tokens", request.max_tokens(), kMinMaxTokens, kMaxMaxTokens, violations);
  }
  if (request.has_temperature()) {
    CheckDoubleRange("temperature", request.temperature(), 0.0, kMaxTemperature, violations);
  }
  if (request.has_top_p()) {
    CheckDoubleRange("top_p", request.top_p(), 0.0, kMaxTopP, violations);
  }
  if (request.has_top_k()) {
    CheckIntRange("top_k", request.top_k(), 0, kMaxTopK, violations);
  }

  if (!violations.empty()) return std::move(violations).ToStatus();
  if (model == nullptr) return UnknownModel("model", request.model());
  return model;
}

absl::Status ValidateGenerateImages(const anyai::v1::GenerateImagesRequest& request,
                                    const EndpointModels& models, int64_t max_message_chars) {
  Violations violations;
  CheckText([] { return Named("prompt"); }, request.prompt(), max_message_chars,
            /*required=*/true, violations);
  const std::string_view model = models.Resolve(request.model());

  if (request.has_n()) {
    if (request.n() < 1 || request.n() > kMaxImagesPerRequest) {
      CheckIntRange("n", request.n(), 1, kMaxImagesPerRequest, violations);
    } else if (model == kDallE3 && request.n() != 1) {
      violations.Add("n", absl::StrCat("dall-e-3 makes 1 image per request, got ", request.n()));
    }
  }
  const std::string& quality = request.quality();
  if (!quality.empty() && quality != "standard" && quality != "hd") {
    violations.Add("quality", absl::StrCat(R"(must be "standard" or "hd", got ")",
                                           QuoteForMessage(quality), "\""));
  }
  const std::string& format = request.response_format();
  if (!format.empty() && format != "url" && format != "b64_json") {
    violations.Add("response_format", absl::StrCat(R"(must be "url" or "b64_json", got ")",
                                                   QuoteForMessage(format), "\""));
  }
  const std::string& size = request.size();
  if (!size.empty()) {
    if (model == kDallE2 && !OneOf(size, kDallE2Sizes)) {
      violations.Add("size", absl::StrCat("dall-e-2 makes ", ListOf(kDallE2Sizes), ", got \"",
                                          QuoteForMessage(size), "\""));
    } else if (model == kDallE3 && !OneOf(size, kDallE3Sizes)) {
      violations.Add("size", absl::StrCat("dall-e-3 makes ", ListOf(kDallE3Sizes), ", got \"",
                                          QuoteForMessage(size), "\""));
    } else if (!OneOf(size, kAllImageSizes)) {
      violations.Add("size", absl::StrCat("must be ", ListOf(kAllImageSizes), ", got \"",
                                          QuoteForMessage(size), "\""));
    }
  }
  return Finish(std::move(violations), CheckEndpointModel(request.model(), models));
}

absl::Status ValidateImagine(const anyai::v1::ImagineRequest& request, const EndpointModels& models,
                             int64_t max_message_chars) {
  Violations violations;
  CheckText([] { return Named("prompt"); }, request.prompt(), max_message_chars,
            /*required=*/true, violations);
  CheckText([] { return Named("negative_prompt"); }, request.negative_prompt(), max_message_chars,
            /*required=*/false, violations);

  if (models.Resolve(request.model()) == kPluto) {
    if (request.has_width()) violations.Add("width", kPlutoOnly);
    if (request.has_height()) violations.Add("height", kPlutoOnly);
    if (request.has_steps()) violations.Add("steps", kPlutoOnly);
    if (request.has_seed()) violations.Add("seed", kPlutoOnly);
  } else {
    auto check_side = [&violations](const char* field, int32_t value) {
      if (value < kMinImagineSide || value > kMaxImagineSide || value % kImagineSideMultiple != 0) {
        violations.Add(field,
                       absl::StrCat("must be a multiple of ", kImagineSideMultiple, " between ",
                                    kMinImagineSide, " and ", kMaxImagineSide, ", got ", value));
      }
    };
    if (request.has_width()) check_side("width", request.width());
    if (request.has_height()) check_side("height", request.height());
    if (request.has_steps()) {
      CheckIntRange("steps", request.steps(), kMinImagineSteps, kMaxImagineSteps, violations);
    }
    if (request.has_seed() && request.seed() < 0) {
      violations.Add("seed", absl::StrCat("must be at least 0, got ", request.seed()));
    }
  }
  return Finish(std::move(violations), CheckEndpointModel(request.model(), models));
}

absl::Status ValidateAsk(const anyai::v1::AskRequest& request, int64_t max_message_chars) {
  Violations violations;
  CheckText([] { return Named("prompt"); }, request.prompt(), max_message_chars,
            /*required=*/true, violations);
  return Finish(std::move(violations), absl::OkStatus());
}

absl::Status ValidateDescribeImage(const anyai::v1::DescribeImageRequest& request,
                                   const EndpointModels& models) {
  Violations violations;
  if (request.url().empty()) {
    violations.Add("url", "required");
  } else if (absl::StatusOr<HttpUrl> url = ParseHttpUrl(request.url()); !url.ok()) {
    violations.Add("url", std::string(url.status().message()));
  }
  return Finish(std::move(violations), CheckEndpointModel(request.model(), models));
}

void ApplyGenerateImagesDefaults(anyai::v1::GenerateImagesRequest* request,
                                 const EndpointModels& models) {
  if (request->model().empty()) request->set_model(models.default_model);
  if (!request->has_n()) request->set_n(1);
  if (request->quality().empty()) request->set_quality(kDefaultImageQuality);
  if (request->response_format().empty()) {
    request->set_response_format(kDefaultImageResponseFormat);
  }
  if (request->size().empty()) request->set_size(kDefaultImageSize);
}

void ApplyImagineDefaults(anyai::v1::ImagineRequest* request, const EndpointModels& models) {
  if (request->model().empty()) request->set_model(models.default_model);
  if (!request->has_width()) request->set_width(kDefaultImagineSide);
  if (!request->has_height()) request->set_height(kDefaultImagineSide);
  if (!request->has_steps()) request->set_steps(kDefaultImagineSteps);
}

void ApplyDescribeImageDefaults(anyai::v1::DescribeImageRequest* request,
                                const EndpointModels& models) {
  if (request->model().empty()) request->set_model(models.default_model);
}

absl::StatusOr<HttpUrl> ParseHttpUrl(std::string_view url) {
  if (url.empty()) return BadUrl("required");
  if (url.size() > kMaxUrlBytes) {
    return BadUrl(absl::StrCat("longer than ", kMaxUrlBytes, " bytes"));
  }
  for (char c : url) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7F) {
      return BadUrl("must be printable ASCII without spaces (percent-encode other characters)");
    }
    if (c == '\\') return BadUrl("must not contain a backslash");
  }

  HttpUrl result;
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) {
    return BadUrl("must be an absolute http or https URL");
  }
  result.scheme = absl::AsciiStrToLower(absl::string_view(url.data(), scheme_end));
  if (result.scheme == "http") {
    result.port = 80;
  } else if (result.scheme == "https") {
    result.port = 443;
  } else {
    return BadUrl("must be an absolute http or https URL");
  }

  std::string_view rest = url.substr(scheme_end + 3);
  const size_t authority_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, authority_end);
  std::string_view tail =
      authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  if (authority.find('@') != std::string_view::npos) {
    return BadUrl("must not contain user information (user:password@)");
  }

  std::string_view host;
  std::string_view port;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return BadUrl("has an unterminated IPv6 address");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return BadUrl("has characters after its IPv6 address");
      port = after.substr(1);
      has_port = true;
    }
    uint8_t bytes[16];
    if (!ParseIpv6(host, bytes)) return BadUrl("has an invalid IPv6 address");
    result.host_is_ip = true;
  } else {
    const size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      has_port = true;
    }
  }
  if (host.empty()) return BadUrl("has no host");
  result.host = absl::AsciiStrToLower(absl::string_view(host.data(), host.size()));

  if (!result.host_is_ip) {
    std::string_view name = result.host;
    if (name.back() == '.') name.remove_suffix(1);
    const size_t last_dot = name.rfind('.');
    const std::string_view last_label =
        last_dot == std::string_view::npos ? name : name.substr(last_dot + 1);
    const bool numeric = IsDigits(last_label) ||
                         (last_label.size() >= 2 && last_label[0] == '0' && last_label[1] == 'x');
    if (numeric) {
      uint8_t bytes[4];
      if (!ParseCanonicalIpv4(name, bytes)) {
        return BadUrl("has a numeric host that is not a dotted-quad IPv4 address");
      }
      result.host = std::string(name);
      result.host_is_ip = true;
    } else if (!IsDnsName(result.host)) {
      return BadUrl("has an invalid host name");
    }
  }

  if (has_port) {
    if (!IsDigits(port) || port.size() > 5) return BadUrl("has a port that is not 1 to 65535");
    int value = 0;
    for (char c : port) value = value * 10 + (c - '0');
    if (value < 1 || value > 65535) return BadUrl("has a port that is not 1 to 65535");
    result.port = value;
  }

  const size_t fragment = tail.find('#');
  if (fragment != std::string_view::npos) tail = tail.substr(0, fragment);
  // Built with push_back/append: assigning a literal here trips GCC 12's -Wrestrict false
  // positive at -O3.
  if (tail.empty() || tail.front() == '?') result.path_and_query.push_back('/');
  result.path_and_query.append(tail.data(), tail.size());
  return result;
}

bool IsPublicAddress(std::string_view ip_literal) {
  if (ip_literal.size() >= 2 && ip_literal.front() == '[' && ip_literal.back() == ']') {
    ip_literal = ip_literal.substr(1, ip_literal.size() - 2);
    uint8_t v6[16];
    return ParseIpv6(ip_literal, v6) && IsPublicIpv6(v6);
  }
  uint8_t v4[4];
  if (ParseCanonicalIpv4(ip_literal, v4)) return IsPublicIpv4(v4);
  uint8_t v6[16];
  return ParseIpv6(ip_literal, v6) && IsPublicIpv6(v6);
}

}  // namespace anyai::server
