#include "server/config/config.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "anyai/v1/config.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/message.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "quota/plan.h"
#include "server/gateway/catalogue.h"
#include "server/gateway/client_address.h"
#include "server/gateway/proto_time.h"
#include "server/gateway/validation.h"
#include "server/net/allow_list.h"
#include "server/net/host_port.h"
#include "server/net/url.h"

namespace anyai::server {
namespace {

using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::Message;
using ::google::protobuf::Reflection;

// The compiled-in defaults, as config.proto's comments state them.
constexpr char kDefaultGrpcListen[] = "0.0.0.0:50051";
constexpr char kDefaultHttpListen[] = "0.0.0.0:8080";
constexpr char kDefaultDataDir[] = "data";
constexpr absl::Duration kDefaultIdleTenantTimeout = absl::Minutes(10);
constexpr int64_t kDefaultMaxBodyBytes = int64_t{1} << 20;
constexpr int64_t kDefaultMaxHeaderBytes = int64_t{16} << 10;
constexpr absl::Duration kDefaultHttpIdleTimeout = absl::Seconds(60);
constexpr absl::Duration kDefaultHttpReadTimeout = absl::Seconds(30);
constexpr absl::Duration kDefaultKeyCacheTtl = absl::Seconds(5);
constexpr absl::Duration kDefaultImageUrlTtl = absl::Hours(1);  // as OpenAI's image URLs
constexpr int64_t kDefaultImageStoreMaxBytes = int64_t{256} << 20;
constexpr absl::Duration kDefaultProviderTimeout = absl::Seconds(60);
// Hardening (SPEC §10): limits that keep a 2-core server serving a normal client while an
// attacker holds everything they allow.
constexpr char kDefaultAdminListen[] = "127.0.0.1:50052";
constexpr int32_t kDefaultMaxConnections = 4096;
constexpr int32_t kDefaultMaxConnectionsPerAddress = 64;
constexpr absl::Duration kDefaultFirstByteTimeout = absl::Seconds(10);
constexpr absl::Duration kDefaultHeaderTimeout = absl::Seconds(10);
constexpr int32_t kDefaultMaxConcurrentStreams = 100;
constexpr int64_t kDefaultGrpcMemoryLimitBytes = int64_t{256} << 20;
constexpr int32_t kDefaultMaxFailedAuthPerMinute = 60;
constexpr int32_t kDefaultAnonymousIpv6PrefixLength = 64;
constexpr int64_t kDefaultMaxResidentTenants = 1'000'000;
constexpr absl::Duration kDefaultDrainDelay = absl::ZeroDuration();
constexpr absl::Duration kDefaultShutdownGrace = absl::Seconds(5);
constexpr absl::Duration kMaxKeyCacheTtl = absl::Hours(1);
constexpr absl::Duration kDefaultHandoffFlushInterval = absl::Seconds(1);
constexpr absl::Duration kMaxHandoffFlushInterval = absl::Hours(1);
constexpr int64_t kDefaultKeyCacheCapacity = 1'000'000;
// A plan's default_token_reserve when the config gives none: a typical chat answer's length,
// so that a request without max_tokens reserves a realistic estimate in token and spend
// windows. It matters only when a class has such windows (the compiled-in plans have none).
constexpr int64_t kDefaultTokenReserve = 1024;

// A config file larger than this is refused rather than read into memory.
constexpr size_t kMaxConfigFileBytes = size_t{16} << 20;

constexpr char kRedacted[] = "<redacted>";

absl::Status Invalid(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(std::string(field), ": ", std::string(problem)));
}

std::string Quoted(absl::string_view s) { return absl::StrCat("\"", std::string(s), "\""); }

// --- Durations ---

// The value of `d` (FromProto of proto_time.h), or InvalidArgument naming `field` when it
// breaks Duration's own rules (the range of ±10000 years, nanos within a second and of the
// seconds' sign).
absl::StatusOr<absl::Duration> DurationField(const google::protobuf::Duration& d,
                                             absl::string_view field) {
  constexpr int64_t kMaxSeconds = 315576000000;
  const bool bad_range = d.seconds() < -kMaxSeconds || d.seconds() > kMaxSeconds ||
                         d.nanos() <= -1000000000 || d.nanos() >= 1000000000;
  const bool bad_sign = (d.seconds() > 0 && d.nanos() < 0) || (d.seconds() < 0 && d.nanos() > 0);
  if (bad_range || bad_sign) return Invalid(field, "not a valid google.protobuf.Duration");
  return FromProto(d);
}

// --- Prices ---

// A price in USD per million tokens as micro-USD per million tokens, rounded to the nearest
// (a double's 0.15 is 0.1499999999999999944..., so exactness cannot be asked of it); `field`
// names it in the error. Refuses what is not finite, negative, above
// kMaxMicroUsdPerMillionTokens, or positive but below half a micro-USD per million.
absl::StatusOr<int64_t> MicroUsdPerMillion(double usd, absl::string_view field) {
  constexpr int64_t kMaxUsd = kMaxMicroUsdPerMillionTokens / 1000000;
  if (!std::isfinite(usd)) return Invalid(field, "must be a finite number of USD");
  // %.15g: the shortest form of every price a person writes (0.15, not 0.1499999...).
  char written[32];
  std::snprintf(written, sizeof(written), "%.15g", usd);
  if (usd < 0 || usd > static_cast<double>(kMaxUsd)) {
    return Invalid(field,
                   absl::StrCat(written, " is outside [0, ", kMaxUsd, "] USD per million tokens"));
  }
  const int64_t micro = std::llround(usd * 1e6);
  if (usd > 0 && micro == 0) {
    return Invalid(field, absl::StrCat(written,
                                       " is below the resolution of 0.000001 USD per million "
                                       "tokens; write 0 for free"));
  }
  return micro;
}

// Micro-USD per million tokens back as USD per million tokens, for DefaultConfig: the nearest
// double, which MicroUsdPerMillion rounds back to the same integer.
double UsdPerMillion(int64_t micro_usd) { return static_cast<double>(micro_usd) / 1e6; }

// --- Merging ---

void CopySingular(const Message& from, const FieldDescriptor* f, Message* to) {
  const Reflection* rf = from.GetReflection();
  const Reflection* rt = to->GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      rt->SetInt32(to, f, rf->GetInt32(from, f));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      rt->SetInt64(to, f, rf->GetInt64(from, f));
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      rt->SetUInt32(to, f, rf->GetUInt32(from, f));
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      rt->SetUInt64(to, f, rf->GetUInt64(from, f));
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      rt->SetDouble(to, f, rf->GetDouble(from, f));
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      rt->SetFloat(to, f, rf->GetFloat(from, f));
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      rt->SetBool(to, f, rf->GetBool(from, f));
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      rt->SetEnumValue(to, f, rf->GetEnumValue(from, f));
      break;
    case FieldDescriptor::CPPTYPE_STRING:
      rt->SetString(to, f, rf->GetString(from, f));
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      rt->MutableMessage(to, f)->CopyFrom(rf->GetMessage(from, f));
      break;
  }
}

void ReplaceRepeated(const Message& from, const FieldDescriptor* f, Message* to) {
  const Reflection* rf = from.GetReflection();
  const Reflection* rt = to->GetReflection();
  rt->ClearField(to, f);
  const int n = rf->FieldSize(from, f);
  for (int i = 0; i < n; ++i) {
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        rt->AddInt32(to, f, rf->GetRepeatedInt32(from, f, i));
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        rt->AddInt64(to, f, rf->GetRepeatedInt64(from, f, i));
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        rt->AddUInt32(to, f, rf->GetRepeatedUInt32(from, f, i));
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        rt->AddUInt64(to, f, rf->GetRepeatedUInt64(from, f, i));
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        rt->AddDouble(to, f, rf->GetRepeatedDouble(from, f, i));
        break;
      case FieldDescriptor::CPPTYPE_FLOAT:
        rt->AddFloat(to, f, rf->GetRepeatedFloat(from, f, i));
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        rt->AddBool(to, f, rf->GetRepeatedBool(from, f, i));
        break;
      case FieldDescriptor::CPPTYPE_ENUM:
        rt->AddEnumValue(to, f, rf->GetRepeatedEnumValue(from, f, i));
        break;
      case FieldDescriptor::CPPTYPE_STRING:
        rt->AddString(to, f, rf->GetRepeatedString(from, f, i));
        break;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        rt->AddMessage(to, f)->CopyFrom(rf->GetRepeatedMessage(from, f, i));
        break;
    }
  }
}

// Merges `from` over `to` by the rules in config.h. ListFields lists exactly the fields `from`
// sets: non-zero scalars, non-empty repeated fields, present messages.
void MergeOver(const Message& from, Message* to) {
  std::vector<const FieldDescriptor*> fields;
  from.GetReflection()->ListFields(from, &fields);
  for (const FieldDescriptor* f : fields) {
    if (f->is_repeated()) {
      ReplaceRepeated(from, f, to);
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
               f->message_type() != google::protobuf::Duration::descriptor()) {
      MergeOver(from.GetReflection()->GetMessage(from, f),
                to->GetReflection()->MutableMessage(to, f));
    } else {
      CopySingular(from, f, to);
    }
  }
}

void WriteDerivedDefaults(v1::ServerConfig& config) {
  for (v1::PlanConfig& plan : *config.mutable_plans()) {
    if (plan.default_token_reserve() == 0) plan.set_default_token_reserve(kDefaultTokenReserve);
  }
  for (v1::ModelConfig& model : *config.mutable_models()) {
    if (model.feature_class().empty()) model.set_feature_class(DefaultFeatureClass(model.id()));
  }
  for (v1::ProviderConfig& provider : *config.mutable_providers()) {
    if (!provider.has_timeout()) *provider.mutable_timeout() = ToProto(kDefaultProviderTimeout);
  }
}

// --- Parsing ---

class FirstErrorCollector final : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (has_error_) return;
    has_error_ = true;
    line_ = line;
    column_ = column;
    message_ = message;
  }

  // "<source>:<line>:<column>: <message>", 1-based. TextFormat's value errors ("Expected
  // integer, got: ...") do not say whose value it was, so the field named on that line
  // before the error is added when the message does not already name it.
  std::string Describe(absl::string_view text, absl::string_view source) const {
    if (!has_error_) return absl::StrCat(std::string(source), ": cannot be parsed as textproto");
    if (line_ < 0) return absl::StrCat(std::string(source), ": ", message_);
    std::string out =
        absl::StrCat(std::string(source), ":", line_ + 1, ":", column_ + 1, ": ", message_);
    const std::string field = FieldBefore(text);
    if (!field.empty() && !absl::StrContains(message_, Quoted(field))) {
      absl::StrAppend(&out, " (field ", Quoted(field), ")");
    }
    return out;
  }

 private:
  // The last `name:` on the error's line before its column, or "".
  std::string FieldBefore(absl::string_view text) const {
    size_t begin = 0;
    for (int line = 0; line < line_ && begin != absl::string_view::npos; ++line) {
      begin = text.find('\n', begin);
      if (begin != absl::string_view::npos) ++begin;
    }
    if (begin == absl::string_view::npos) return "";
    absl::string_view line = text.substr(begin, text.find('\n', begin) - begin);
    line = line.substr(0, std::min(line.size(), static_cast<size_t>(std::max(column_, 0))));
    const size_t colon = line.rfind(':');
    if (colon == absl::string_view::npos) return "";
    size_t end = colon;
    while (end > 0 && absl::ascii_isspace(static_cast<unsigned char>(line[end - 1]))) --end;
    size_t start = end;
    while (start > 0 && (absl::ascii_isalnum(static_cast<unsigned char>(line[start - 1])) ||
                         line[start - 1] == '_')) {
      --start;
    }
    return std::string(line.substr(start, end - start));
  }

  bool has_error_ = false;
  int line_ = -1;
  int column_ = -1;
  std::string message_;
};

// The 1-based line of the first `"name"` used as a JSON key in `text`, or 0.
int LineOfJsonKey(absl::string_view text, absl::string_view name) {
  const std::string needle = Quoted(name);
  for (size_t at = text.find(needle); at != absl::string_view::npos;
       at = text.find(needle, at + 1)) {
    size_t after = at + needle.size();
    while (after < text.size() && absl::ascii_isspace(static_cast<unsigned char>(text[after]))) {
      ++after;
    }
    if (after < text.size() && text[after] == ':') {
      return 1 + static_cast<int>(std::count(text.begin(), text.begin() + at, '\n'));
    }
  }
  return 0;
}

// Rewrites protobuf's JSON errors ("(plans[0].classes[0]) windowz: Cannot find field.") into
// "<source>:<line>: unknown field "windowz" in plans[0].classes[0]".
std::string DescribeJsonError(absl::string_view text, absl::string_view source,
                              absl::string_view message) {
  constexpr absl::string_view kUnknown = ": Cannot find field.";
  if (absl::EndsWith(message, kUnknown)) {
    absl::string_view rest = message.substr(0, message.size() - kUnknown.size());
    std::string where;
    if (absl::StartsWith(rest, "(")) {
      const size_t close = rest.find(") ");
      if (close != absl::string_view::npos) {
        where = absl::StrCat(" in ", std::string(rest.substr(1, close - 1)));
        rest.remove_prefix(close + 2);
      }
    }
    const int line = LineOfJsonKey(text, rest);
    return absl::StrCat(std::string(source), line > 0 ? absl::StrCat(":", line) : "",
                        ": unknown field ", Quoted(rest), where);
  }
  return absl::StrCat(std::string(source), ": ", std::string(message));
}

absl::Status FileError(const std::string& path, int error) {
  const std::string message =
      absl::StrCat("config file ", Quoted(path), ": ", std::generic_category().message(error));
  switch (error) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::FailedPreconditionError(message);
  }
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                       &std::fclose);
  if (file == nullptr) return FileError(path, errno);
  std::string contents;
  char buffer[1 << 16];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file.get())) > 0) {
    contents.append(buffer, n);
    if (contents.size() > kMaxConfigFileBytes) {
      return absl::InvalidArgumentError(absl::StrCat("config file ", Quoted(path), ": larger than ",
                                                     kMaxConfigFileBytes, " bytes"));
    }
  }
  if (std::ferror(file.get())) return FileError(path, errno);
  return contents;
}

// --- Validation ---

std::string Path(absl::string_view list, int i) {
  return absl::StrCat(std::string(list), "[", i, "]");
}

absl::Status CheckPositiveDuration(const v1::ServerConfig& config, const FieldDescriptor* f,
                                   bool zero_allowed) {
  const Reflection* r = config.GetReflection();
  if (!r->HasField(config, f)) return absl::OkStatus();
  const auto& proto = static_cast<const google::protobuf::Duration&>(r->GetMessage(config, f));
  absl::StatusOr<absl::Duration> d = DurationField(proto, f->name());
  if (!d.ok()) return d.status();
  if (*d < absl::ZeroDuration() || (*d == absl::ZeroDuration() && !zero_allowed)) {
    return Invalid(f->name(), absl::StrCat("must be ", zero_allowed ? "at least 0" : "positive",
                                           ", got ", absl::FormatDuration(*d)));
  }
  return absl::OkStatus();
}

// The classes a request can count against: every endpoint's, and every model's.
struct ClassUse {
  std::string feature_class;
  std::string user;  // who counts against it, for the message
  // From config.models: an unmetered class is then reported at the model (ValidateModels).
  bool configured_model = false;
};

std::vector<ClassUse> UsedClasses(const v1::ServerConfig& config) {
  std::vector<ClassUse> uses = {
      {quota::kImageGeneration, "POST /v1/images/generations"},
      {quota::kImagine, "GET /v1/imagine"},
      {quota::kGlobalAsk, "GET /v1/ask"},
      {quota::kVision, "GET /v1/images/vision"},
      {quota::kMeta, "GET /v1/models and GET /check"},
  };
  if (config.models().empty()) {
    for (const ModelInfo& m : DefaultModels()) {
      uses.push_back({m.feature_class, absl::StrCat("the default model ", Quoted(m.id))});
    }
  } else {
    for (int i = 0; i < config.models_size(); ++i) {
      const v1::ModelConfig& m = config.models(i);
      uses.push_back({m.feature_class().empty() ? DefaultFeatureClass(m.id()) : m.feature_class(),
                      absl::StrCat(Path("models", i), " (", Quoted(m.id()), ")"), true});
    }
  }
  return uses;
}

std::vector<std::string> ProviderNames(const v1::ServerConfig& config) {
  std::vector<std::string> names = {kBuiltinProvider};
  for (const v1::ProviderConfig& p : config.providers()) names.push_back(p.name());
  return names;
}

absl::Status CheckProviderReference(absl::string_view field, absl::string_view name,
                                    const std::vector<std::string>& known) {
  if (std::find(known.begin(), known.end(), name) != known.end()) return absl::OkStatus();
  return Invalid(
      field,
      absl::StrCat(Quoted(name), " is not a provider (known: ", absl::StrJoin(known, ", "), ")"));
}

bool IsEnvName(absl::string_view s) {
  if (s.empty() || absl::ascii_isdigit(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

absl::Status ValidateProviders(const v1::ServerConfig& config) {
  std::vector<std::string> names;
  for (int i = 0; i < config.providers_size(); ++i) {
    const v1::ProviderConfig& p = config.providers(i);
    const std::string at = Path("providers", i);
    if (p.name().empty()) return Invalid(at + ".name", "required");
    if (p.name() == kBuiltinProvider) {
      return Invalid(at + ".name", "\"builtin\" is predefined and may not be redefined");
    }
    const auto seen = std::find(names.begin(), names.end(), p.name());
    if (seen != names.end()) {
      return Invalid(at + ".name", absl::StrCat(Quoted(p.name()), " is defined twice (also ",
                                                Path("providers", seen - names.begin()), ")"));
    }
    names.push_back(p.name());
    switch (p.type()) {
      case v1::PROVIDER_TYPE_BUILTIN:
        for (const auto& [field, set] :
             {std::pair<const char*, bool>{"base_url", !p.base_url().empty()},
              {"api_key", !p.api_key().empty()},
              {"api_key_env", !p.api_key_env().empty()},
              {"model_map", !p.model_map().empty()}}) {
          if (set) {
            return Invalid(absl::StrCat(at, ".", field),
                           "only a PROVIDER_TYPE_OPENAI provider takes it");
          }
        }
        break;
      case v1::PROVIDER_TYPE_OPENAI: {
        const std::string& url = p.base_url();
        if (url.empty()) return Invalid(at + ".base_url", "required for PROVIDER_TYPE_OPENAI");
        const absl::StatusOr<net::Url> parsed = net::Url::Parse(url);
        if (!parsed.ok() || (parsed->scheme != "http" && parsed->scheme != "https") ||
            parsed->query.has_value() || parsed->fragment.has_value()) {
          return Invalid(at + ".base_url", absl::StrCat(Quoted(url),
                                                        " is not an http(s) base URL such as "
                                                        "\"https://upstream.example/v1\""));
        }
        if (!p.api_key_env().empty() && !IsEnvName(p.api_key_env())) {
          return Invalid(at + ".api_key_env", absl::StrCat(Quoted(p.api_key_env()),
                                                           " is not an environment variable "
                                                           "name"));
        }
        for (const auto& [ours, theirs] : p.model_map()) {
          if (ours.empty() || theirs.empty()) {
            return Invalid(at + ".model_map", "model ids may not be empty");
          }
        }
        break;
      }
      default:
        return Invalid(at + ".type",
                       p.type() == v1::PROVIDER_TYPE_UNSPECIFIED
                           ? std::string("required (PROVIDER_TYPE_BUILTIN or PROVIDER_TYPE_OPENAI)")
                           : absl::StrCat("unknown value ", static_cast<int>(p.type())));
    }
    if (p.has_timeout()) {
      absl::StatusOr<absl::Duration> timeout = DurationField(p.timeout(), at + ".timeout");
      if (!timeout.ok()) return timeout.status();
      if (*timeout <= absl::ZeroDuration()) {
        return Invalid(at + ".timeout",
                       absl::StrCat("must be positive, got ", absl::FormatDuration(*timeout)));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateModels(const v1::ServerConfig& config, const quota::PlanTable& plans,
                            const std::vector<std::string>& providers) {
  const std::vector<std::string> classes = plans.FeatureClasses();
  std::vector<std::string> ids;
  for (int i = 0; i < config.models_size(); ++i) {
    const v1::ModelConfig& m = config.models(i);
    const std::string at = Path("models", i);
    if (m.id().empty()) return Invalid(at + ".id", "required");
    const auto seen = std::find(ids.begin(), ids.end(), m.id());
    if (seen != ids.end()) {
      return Invalid(at + ".id", absl::StrCat(Quoted(m.id()), " is listed twice (also ",
                                              Path("models", seen - ids.begin()), ")"));
    }
    ids.push_back(m.id());
    if (m.created() < 0) {
      return Invalid(at + ".created", absl::StrCat("must be at least 0, got ", m.created()));
    }
    const std::string feature_class =
        m.feature_class().empty() ? DefaultFeatureClass(m.id()) : m.feature_class();
    if (std::find(classes.begin(), classes.end(), feature_class) == classes.end()) {
      return Invalid(at + ".feature_class",
                     absl::StrCat(Quoted(feature_class), " is not a class of the plans (",
                                  absl::StrJoin(classes, ", "), ")"));
    }
    if (!m.provider().empty()) {
      absl::Status s = CheckProviderReference(at + ".provider", m.provider(), providers);
      if (!s.ok()) return s;
    }
    for (const auto& [field, usd] :
         {std::pair<const char*, double>{"input_usd_per_million_tokens",
                                         m.input_usd_per_million_tokens()},
          {"output_usd_per_million_tokens", m.output_usd_per_million_tokens()}}) {
      if (absl::StatusOr<int64_t> price = MicroUsdPerMillion(usd, absl::StrCat(at, ".", field));
          !price.ok()) {
        return price.status();
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateEndpoint(absl::string_view name, const v1::EndpointConfig& endpoint,
                              const std::optional<EndpointModels>& defaults,
                              const std::vector<std::string>& providers) {
  const std::string at(name);
  if (!defaults.has_value()) {
    if (!endpoint.models().empty()) return Invalid(at + ".models", "this endpoint takes no model");
    if (!endpoint.default_model().empty()) {
      return Invalid(at + ".default_model", "this endpoint takes no model");
    }
  } else {
    const EndpointModels models = EndpointModelsFromConfig(endpoint, *defaults);
    for (size_t i = 0; i < models.models.size(); ++i) {
      const std::string& m = models.models[i];
      const std::string mat = absl::StrCat(at, ".", Path("models", static_cast<int>(i)));
      if (m.empty()) return Invalid(mat, "may not be empty");
      if (std::find(models.models.begin(), models.models.begin() + i, m) !=
          models.models.begin() + i) {
        return Invalid(mat, absl::StrCat(Quoted(m), " is listed twice"));
      }
    }
    if (!models.Contains(models.default_model)) {
      return Invalid(at + ".default_model",
                     absl::StrCat(Quoted(models.default_model), " is not in ", at, ".models (",
                                  absl::StrJoin(models.models, ", "), ")"));
    }
  }
  return CheckProviderReference(at + ".provider", EndpointProvider(endpoint), providers);
}

bool IsWildcard(const net::Host& host) {
  return host.address.has_value() && host.address->IsUnspecified();
}

absl::Status ValidateListen(const v1::ServerConfig& config) {
  struct Listener {
    const char* field;
    const std::string& value;
    const char* fallback;
    net::HostPort at;
  };
  Listener listeners[] = {{"grpc_listen", config.grpc_listen(), kDefaultGrpcListen, {}},
                          {"http_listen", config.http_listen(), kDefaultHttpListen, {}},
                          {"admin_listen", config.admin_listen(), kDefaultAdminListen, {}}};
  for (Listener& l : listeners) {
    absl::StatusOr<net::HostPort> hp =
        net::HostPort::Parse(l.value.empty() ? std::string(l.fallback) : l.value);
    if (!hp.ok()) return Invalid(l.field, hp.status().message());
    l.at = *hp;
  }
  for (size_t i = 0; i < std::size(listeners); ++i) {
    for (size_t j = 0; j < i; ++j) {
      const net::HostPort& a = listeners[j].at;
      const net::HostPort& b = listeners[i].at;
      if (b.port != 0 && a.port == b.port &&
          (a.host == b.host || IsWildcard(a.host) || IsWildcard(b.host))) {
        return Invalid(listeners[i].field,
                       absl::StrCat("port ", b.port, " is ", listeners[j].field, "'s port too"));
      }
    }
  }
  return absl::OkStatus();
}

void AddClass(v1::PlanConfig& plan, const quota::ClassLimits& limits) {
  v1::FeatureClassLimits* out = plan.add_classes();
  out->set_feature_class(limits.feature_class);
  for (const quota::Window& w : limits.windows) {
    v1::WindowLimit* window = out->add_windows();
    *window->mutable_length() = ToProto(w.length);
    window->set_max_requests(w.limit);
  }
  for (const quota::Window& w : limits.token_windows) {
    v1::TokenWindowLimit* window = out->add_token_windows();
    *window->mutable_length() = ToProto(w.length);
    window->set_max_tokens(w.limit);
  }
  for (const quota::Window& w : limits.spend_windows) {
    v1::SpendWindowLimit* window = out->add_spend_windows();
    *window->mutable_length() = ToProto(w.length);
    window->set_max_micro_usd(w.limit);
  }
  out->set_max_concurrent(limits.max_concurrent);
}

// The plan's reserve as the engine gets it: kDefaultTokenReserve for 0 (proto3's "unset").
int64_t TokenReserve(int64_t configured) {
  return configured == 0 ? kDefaultTokenReserve : configured;
}

// The window at `at` (e.g. "plans[0].classes[1].token_windows[0]"): its length present and a
// valid Duration, and, when `most` is given, its limit (the field `limit_field`) in [1, most].
// The rest (the length's range, duplicates, multiples, a request limit) is the engine's.
absl::StatusOr<quota::Window> WindowFromConfig(const google::protobuf::Duration* length,
                                               int64_t limit, const std::string& at,
                                               absl::string_view limit_field,
                                               std::optional<int64_t> most) {
  if (length == nullptr) return Invalid(at + ".length", "required");
  absl::StatusOr<absl::Duration> d = DurationField(*length, at + ".length");
  if (!d.ok()) return d.status();
  if (most.has_value() && (limit < 1 || limit > *most)) {
    return Invalid(absl::StrCat(at, ".", std::string(limit_field)),
                   absl::StrCat(limit, " is outside [1, ", *most, "]"));
  }
  return quota::Window{*d, limit};
}

v1::EndpointConfig ToProto(const EndpointModels& models) {
  v1::EndpointConfig out;
  for (const std::string& m : models.models) out.add_models(m);
  out.set_default_model(models.default_model);
  out.set_provider(kBuiltinProvider);
  return out;
}

}  // namespace

v1::ServerConfig DefaultConfig() {
  v1::ServerConfig config;
  config.set_grpc_listen(kDefaultGrpcListen);
  config.set_http_listen(kDefaultHttpListen);
  config.set_data_dir(kDefaultDataDir);
  config.set_durability(v1::DURABILITY_PROCESS_CRASH);
  config.set_storage_failure_policy(v1::STORAGE_FAILURE_POLICY_FAIL_CLOSED);
  *config.mutable_plans() = PlansToConfig(quota::DefaultPlanTable());
  config.set_anonymous_plan(quota::kFreePlan);
  for (const ModelInfo& model : DefaultModels()) {
    v1::ModelConfig* out = config.add_models();
    out->set_id(model.id);
    out->set_owned_by(model.owned_by);
    out->set_created(model.created);
    out->set_feature_class(model.feature_class);
    // provider stays empty: such a model follows default_chat_provider.
    out->set_input_usd_per_million_tokens(UsdPerMillion(model.input_micro_usd_per_million_tokens));
    out->set_output_usd_per_million_tokens(
        UsdPerMillion(model.output_micro_usd_per_million_tokens));
  }
  config.set_default_chat_provider(kBuiltinProvider);
  *config.mutable_image_generation() = ToProto(DefaultImageGenerationModels());
  *config.mutable_imagine() = ToProto(DefaultImagineModels());
  config.mutable_ask()->set_provider(kBuiltinProvider);
  *config.mutable_vision() = ToProto(DefaultVisionModels());
  *config.mutable_idle_tenant_timeout() = ToProto(kDefaultIdleTenantTimeout);
  config.set_max_body_bytes(kDefaultMaxBodyBytes);
  config.set_max_header_bytes(kDefaultMaxHeaderBytes);
  *config.mutable_http_idle_timeout() = ToProto(kDefaultHttpIdleTimeout);
  *config.mutable_http_read_timeout() = ToProto(kDefaultHttpReadTimeout);
  config.set_max_messages(kDefaultMaxMessages);
  *config.mutable_key_cache_ttl() = ToProto(kDefaultKeyCacheTtl);
  *config.mutable_image_url_ttl() = ToProto(kDefaultImageUrlTtl);
  config.set_image_store_max_bytes(kDefaultImageStoreMaxBytes);
  config.set_admin_listen(kDefaultAdminListen);
  config.set_max_connections(kDefaultMaxConnections);
  config.set_max_connections_per_address(kDefaultMaxConnectionsPerAddress);
  *config.mutable_first_byte_timeout() = ToProto(kDefaultFirstByteTimeout);
  *config.mutable_header_timeout() = ToProto(kDefaultHeaderTimeout);
  config.set_max_concurrent_streams(kDefaultMaxConcurrentStreams);
  config.set_grpc_memory_limit_bytes(kDefaultGrpcMemoryLimitBytes);
  config.set_max_failed_auth_per_minute(kDefaultMaxFailedAuthPerMinute);
  config.set_anonymous_ipv6_prefix_length(kDefaultAnonymousIpv6PrefixLength);
  config.set_max_resident_tenants(kDefaultMaxResidentTenants);
  *config.mutable_drain_delay() = ToProto(kDefaultDrainDelay);
  *config.mutable_shutdown_grace() = ToProto(kDefaultShutdownGrace);
  config.set_key_cache_capacity(kDefaultKeyCacheCapacity);
  *config.mutable_handoff_flush_interval() = ToProto(kDefaultHandoffFlushInterval);
  return config;
}

v1::ServerConfig MergeOverDefaults(const v1::ServerConfig& overrides) {
  v1::ServerConfig config = DefaultConfig();
  MergeOver(overrides, &config);
  // An endpoint whose models the overrides replace without naming a default defaults to the
  // first of its new models, not to the old default (which may not be among them).
  for (const auto& [from, to] :
       {std::pair{&overrides.image_generation(), config.mutable_image_generation()},
        std::pair{&overrides.imagine(), config.mutable_imagine()},
        std::pair{&overrides.vision(), config.mutable_vision()}}) {
    if (!from->models().empty() && from->default_model().empty()) {
      to->set_default_model(from->models(0));
    }
  }
  WriteDerivedDefaults(config);
  return config;
}

absl::StatusOr<v1::ServerConfig> ParseConfig(absl::string_view text, ConfigFormat format,
                                             absl::string_view source) {
  v1::ServerConfig file;
  switch (format) {
    case ConfigFormat::kTextproto: {
      FirstErrorCollector errors;
      google::protobuf::TextFormat::Parser parser;
      parser.RecordErrorsTo(&errors);
      if (!parser.ParseFromString(std::string(text), &file)) {
        return absl::InvalidArgumentError(errors.Describe(text, source));
      }
      break;
    }
    case ConfigFormat::kJson: {
      google::protobuf::util::JsonParseOptions options;
      options.ignore_unknown_fields = false;
      const auto status = google::protobuf::util::JsonStringToMessage(
          google::protobuf::StringPiece(text.data(), text.size()), &file, options);
      if (!status.ok()) {
        const auto message = status.message();
        return absl::InvalidArgumentError(
            DescribeJsonError(text, source, absl::string_view(message.data(), message.size())));
      }
      break;
    }
  }
  return MergeOverDefaults(file);
}

absl::StatusOr<v1::ServerConfig> LoadConfigFile(const std::string& path) {
  const size_t dot = path.rfind('.');
  const size_t slash = path.rfind('/');
  const std::string extension =
      dot == std::string::npos || (slash != std::string::npos && dot < slash)
          ? ""
          : absl::AsciiStrToLower(path.substr(dot + 1));
  ConfigFormat format;
  if (extension == "textproto" || extension == "txtpb" || extension == "pbtxt" ||
      extension == "textpb") {
    format = ConfigFormat::kTextproto;
  } else if (extension == "json") {
    format = ConfigFormat::kJson;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "config file ", Quoted(path),
        ": unknown format; name it *.textproto, *.txtpb, *.pbtxt, *.textpb or *.json"));
  }
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ParseConfig(*text, format, path);
}

absl::Status ApplyFlagOverrides(v1::ServerConfig& config, const FlagOverrides& flags) {
  for (const auto& [flag, value] : {std::pair<const char*, const std::optional<std::string>*>{
                                        "--grpc_listen", &flags.grpc_listen},
                                    {"--http_listen", &flags.http_listen},
                                    {"--admin_listen", &flags.admin_listen}}) {
    if (!value->has_value()) continue;
    absl::StatusOr<net::HostPort> hp = net::HostPort::Parse(**value);
    if (!hp.ok()) return Invalid(flag, hp.status().message());
  }
  if (flags.data_dir.has_value() && flags.data_dir->empty()) {
    return Invalid("--data_dir", "may not be empty");
  }
  absl::Duration flush_interval;
  if (flags.handoff_flush_interval.has_value() &&
      !absl::ParseDuration(*flags.handoff_flush_interval, &flush_interval)) {
    return Invalid("--handoff_flush_interval",
                   absl::StrCat("\"", absl::CHexEscape(*flags.handoff_flush_interval),
                                "\" is not a duration such as 1s or 500ms"));
  }
  if (flags.grpc_listen.has_value()) config.set_grpc_listen(*flags.grpc_listen);
  if (flags.http_listen.has_value()) config.set_http_listen(*flags.http_listen);
  if (flags.data_dir.has_value()) config.set_data_dir(*flags.data_dir);
  if (flags.admin_listen.has_value()) config.set_admin_listen(*flags.admin_listen);
  if (flags.tls_cert_file.has_value()) config.mutable_tls()->set_cert_file(*flags.tls_cert_file);
  if (flags.tls_key_file.has_value()) config.mutable_tls()->set_key_file(*flags.tls_key_file);
  if (flags.tls_client_ca_file.has_value()) {
    config.mutable_tls()->set_client_ca_file(*flags.tls_client_ca_file);
  }
  if (flags.postgres_dsn.has_value()) config.set_postgres_dsn(*flags.postgres_dsn);
  if (flags.handoff_flush_interval.has_value()) {
    *config.mutable_handoff_flush_interval() = ToProto(flush_interval);
  }
  return absl::OkStatus();
}

void ApplyEnvironment(v1::ServerConfig& config) {
  const char* token = std::getenv(kAdminTokenEnv);
  if (token != nullptr && *token != '\0') config.set_admin_token(token);
}

absl::Status ValidateConfig(const v1::ServerConfig& config) {
  if (absl::Status s = ValidateListen(config); !s.ok()) return s;
  if (!v1::Durability_IsValid(config.durability())) {
    return Invalid("durability",
                   absl::StrCat("unknown value ", static_cast<int>(config.durability())));
  }
  if (!v1::StorageFailurePolicy_IsValid(config.storage_failure_policy())) {
    return Invalid(
        "storage_failure_policy",
        absl::StrCat("unknown value ", static_cast<int>(config.storage_failure_policy())));
  }

  absl::StatusOr<quota::PlanTable> plans = PlanTableFromConfig(config);
  if (!plans.ok()) return plans.status();
  const std::vector<std::string> classes = plans->FeatureClasses();
  for (const ClassUse& use : UsedClasses(config)) {
    if (std::find(classes.begin(), classes.end(), use.feature_class) != classes.end()) continue;
    if (use.configured_model) continue;
    return Invalid(config.plans().empty() ? "plans" : "plans[0].classes",
                   absl::StrCat("no class ", Quoted(use.feature_class), ", which ", use.user,
                                " counts against"));
  }
  const std::string anonymous = AnonymousPlan(config);
  if (plans->Find(anonymous) == nullptr) {
    std::vector<std::string> names;
    for (const quota::Plan& p : plans->plans) names.push_back(p.name);
    return Invalid("anonymous_plan", absl::StrCat(Quoted(anonymous), " is not a plan (",
                                                  absl::StrJoin(names, ", "), ")"));
  }

  if (absl::Status s = ValidateProviders(config); !s.ok()) return s;
  const std::vector<std::string> providers = ProviderNames(config);
  if (absl::Status s = ValidateModels(config, *plans, providers); !s.ok()) return s;
  if (!config.default_chat_provider().empty()) {
    if (absl::Status s = CheckProviderReference("default_chat_provider",
                                                config.default_chat_provider(), providers);
        !s.ok()) {
      return s;
    }
  }
  for (const auto& [name, endpoint, defaults] :
       {std::tuple<const char*, const v1::EndpointConfig*, std::optional<EndpointModels>>{
            "image_generation", &config.image_generation(), DefaultImageGenerationModels()},
        {"imagine", &config.imagine(), DefaultImagineModels()},
        {"ask", &config.ask(), std::nullopt},
        {"vision", &config.vision(), DefaultVisionModels()}}) {
    if (absl::Status s = ValidateEndpoint(name, *endpoint, defaults, providers); !s.ok()) {
      return s;
    }
  }

  // The very parsers the Server and the SSRF guard build these lists with: one rule each.
  if (absl::StatusOr<TrustedProxies> proxies = TrustedProxies::Create(config.trusted_proxies());
      !proxies.ok()) {
    return proxies.status();
  }
  if (absl::StatusOr<net::AllowList> allow = net::AllowList::Parse(
          {config.ssrf_allowlist().begin(), config.ssrf_allowlist().end()}, "ssrf_allowlist");
      !allow.ok()) {
    return allow.status();
  }

  const google::protobuf::Descriptor* d = v1::ServerConfig::descriptor();
  for (const auto& [field, zero_allowed] :
       {std::pair<const char*, bool>{"idle_tenant_timeout", false},
        {"http_idle_timeout", false},
        {"http_read_timeout", false},
        {"key_cache_ttl", true},
        {"image_url_ttl", false},
        {"first_byte_timeout", false},
        {"header_timeout", false},
        {"drain_delay", true},
        {"shutdown_grace", true},
        {"handoff_flush_interval", false}}) {
    if (absl::Status s = CheckPositiveDuration(config, d->FindFieldByName(field), zero_allowed);
        !s.ok()) {
      return s;
    }
  }
  // At most an hour: how long a revocation made elsewhere may take to be seen here.
  if (config.has_key_cache_ttl() && FromProto(config.key_cache_ttl()) > kMaxKeyCacheTtl) {
    return Invalid("key_cache_ttl",
                   absl::StrCat("must be at most ", absl::FormatDuration(kMaxKeyCacheTtl), ", got ",
                                absl::FormatDuration(FromProto(config.key_cache_ttl()))));
  }
  // At most an hour: the bound of what a tenant's new owner may miss on failover.
  if (config.has_handoff_flush_interval() &&
      FromProto(config.handoff_flush_interval()) > kMaxHandoffFlushInterval) {
    return Invalid(
        "handoff_flush_interval",
        absl::StrCat("must be at most ", absl::FormatDuration(kMaxHandoffFlushInterval), ", got ",
                     absl::FormatDuration(FromProto(config.handoff_flush_interval()))));
  }
  if (config.max_body_bytes() < 0) {
    return Invalid("max_body_bytes",
                   absl::StrCat("must be at least 1, got ", config.max_body_bytes()));
  }
  if (config.max_header_bytes() < 0) {
    return Invalid("max_header_bytes",
                   absl::StrCat("must be at least 1, got ", config.max_header_bytes()));
  }
  for (const auto& [field, value] :
       {std::pair<const char*, int64_t>{"max_connections", config.max_connections()},
        {"max_connections_per_address", config.max_connections_per_address()},
        {"max_concurrent_streams", config.max_concurrent_streams()},
        {"grpc_memory_limit_bytes", config.grpc_memory_limit_bytes()},
        {"max_failed_auth_per_minute", config.max_failed_auth_per_minute()},
        {"max_resident_tenants", config.max_resident_tenants()},
        {"key_cache_capacity", config.key_cache_capacity()}}) {
    if (value < 0) return Invalid(field, absl::StrCat("must be at least 1, got ", value));
  }
  if (config.anonymous_ipv6_prefix_length() < 0 || config.anonymous_ipv6_prefix_length() > 128) {
    return Invalid("anonymous_ipv6_prefix_length",
                   absl::StrCat(config.anonymous_ipv6_prefix_length(), " is outside [1, 128]"));
  }
  for (const auto& [field, tls] :
       {std::pair<const char*, const v1::TlsConfig*>{"tls", &config.tls()},
        {"admin_tls", &config.admin_tls()}}) {
    if (tls->cert_file().empty() != tls->key_file().empty()) {
      return Invalid(field, "cert_file and key_file go together: set both or neither");
    }
    if (!tls->client_ca_file().empty() && tls->cert_file().empty()) {
      return Invalid(absl::StrCat(field, ".client_ca_file"),
                     "requires cert_file and key_file (mutual TLS is TLS first)");
    }
  }
  if (config.max_messages() < 0) {
    return Invalid("max_messages", absl::StrCat("must be at least 1, got ", config.max_messages()));
  }
  if (config.image_store_max_bytes() < 0) {
    return Invalid("image_store_max_bytes",
                   absl::StrCat("must be at least 1, got ", config.image_store_max_bytes()));
  }
  if (!config.public_base_url().empty()) {
    absl::StatusOr<net::Url> url = net::Url::Parse(config.public_base_url());
    if (!url.ok() || (url->scheme != "http" && url->scheme != "https") || url->query ||
        url->fragment || absl::EndsWith(config.public_base_url(), "/")) {
      return Invalid("public_base_url",
                     absl::StrCat(Quoted(config.public_base_url()),
                                  " is not an http(s) URL without a query, fragment or trailing "
                                  "'/', such as \"https://api.example.com\""));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<quota::PlanTable> PlanTableFromConfig(const v1::ServerConfig& config) {
  if (config.plans().empty()) {
    quota::PlanTable table = quota::DefaultPlanTable();
    for (quota::Plan& plan : table.plans) {
      plan.default_token_reserve = TokenReserve(plan.default_token_reserve);
    }
    return table;
  }
  quota::PlanTable table;
  for (int i = 0; i < config.plans_size(); ++i) {
    const v1::PlanConfig& plan = config.plans(i);
    const std::string plan_at = Path("plans", i);
    // What the engine cannot say: which plan has no name, which window no length (the engine
    // would see 0s), a Duration out of its own range; and, by path, the range of each field
    // new with tokens, spend and concurrency. The rest (a request window's limit, window
    // lengths, duplicates, multiples, classes across plans) is the engine's.
    if (plan.name().empty()) return Invalid(plan_at + ".name", "required");
    if (plan.default_token_reserve() < 0 ||
        plan.default_token_reserve() > quota::kMaxCostPerWindow) {
      return Invalid(plan_at + ".default_token_reserve",
                     absl::StrCat(plan.default_token_reserve(), " is outside [0, ",
                                  quota::kMaxCostPerWindow, "] (0: ", kDefaultTokenReserve, ")"));
    }
    quota::Plan& out = table.plans.emplace_back();
    out.name = plan.name();
    out.max_message_chars = plan.max_message_chars();
    out.default_token_reserve = TokenReserve(plan.default_token_reserve());
    for (int j = 0; j < plan.classes_size(); ++j) {
      const v1::FeatureClassLimits& limits = plan.classes(j);
      const std::string class_at = absl::StrCat(plan_at, ".", Path("classes", j));
      quota::ClassLimits& class_out = out.classes.emplace_back();
      class_out.feature_class = limits.feature_class();
      for (int k = 0; k < limits.windows_size(); ++k) {
        const v1::WindowLimit& w = limits.windows(k);
        absl::StatusOr<quota::Window> window =
            WindowFromConfig(w.has_length() ? &w.length() : nullptr, w.max_requests(),
                             absl::StrCat(class_at, ".", Path("windows", k)), "max_requests",
                             /*most=*/std::nullopt);
        if (!window.ok()) return window.status();
        class_out.windows.push_back(*window);
      }
      for (int k = 0; k < limits.token_windows_size(); ++k) {
        const v1::TokenWindowLimit& w = limits.token_windows(k);
        absl::StatusOr<quota::Window> window =
            WindowFromConfig(w.has_length() ? &w.length() : nullptr, w.max_tokens(),
                             absl::StrCat(class_at, ".", Path("token_windows", k)), "max_tokens",
                             quota::kMaxCostPerWindow);
        if (!window.ok()) return window.status();
        class_out.token_windows.push_back(*window);
      }
      for (int k = 0; k < limits.spend_windows_size(); ++k) {
        const v1::SpendWindowLimit& w = limits.spend_windows(k);
        absl::StatusOr<quota::Window> window =
            WindowFromConfig(w.has_length() ? &w.length() : nullptr, w.max_micro_usd(),
                             absl::StrCat(class_at, ".", Path("spend_windows", k)), "max_micro_usd",
                             quota::kMaxCostPerWindow);
        if (!window.ok()) return window.status();
        class_out.spend_windows.push_back(*window);
      }
      if (limits.max_concurrent() < 0 || limits.max_concurrent() > quota::kMaxConcurrent) {
        return Invalid(class_at + ".max_concurrent",
                       absl::StrCat(limits.max_concurrent(), " is outside [0, ",
                                    quota::kMaxConcurrent, "] (0: no limit)"));
      }
      class_out.max_concurrent = limits.max_concurrent();
    }
  }
  if (absl::Status s = quota::ValidatePlanTable(table); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("plans: ", std::string(s.message())));
  }
  return table;
}

google::protobuf::RepeatedPtrField<v1::PlanConfig> PlansToConfig(const quota::PlanTable& table) {
  google::protobuf::RepeatedPtrField<v1::PlanConfig> plans;
  for (const quota::Plan& plan : table.plans) {
    v1::PlanConfig* out = plans.Add();
    out->set_name(plan.name);
    out->set_max_message_chars(plan.max_message_chars);
    for (const quota::ClassLimits& limits : plan.classes) AddClass(*out, limits);
    out->set_default_token_reserve(TokenReserve(plan.default_token_reserve));
  }
  return plans;
}

absl::StatusOr<Catalogue> CatalogueFromConfig(const v1::ServerConfig& config) {
  const std::string default_provider = config.default_chat_provider().empty()
                                           ? std::string(kBuiltinProvider)
                                           : config.default_chat_provider();
  std::vector<ModelInfo> models;
  if (config.models().empty()) {
    models = DefaultModels();
    for (ModelInfo& m : models) m.provider = default_provider;
  } else {
    for (int i = 0; i < config.models_size(); ++i) {
      const v1::ModelConfig& m = config.models(i);
      ModelInfo& model = models.emplace_back(
          ModelInfo{m.id(), m.owned_by(), m.created(),
                    m.feature_class().empty() ? DefaultFeatureClass(m.id()) : m.feature_class(),
                    m.provider().empty() ? default_provider : m.provider()});
      for (const auto& [field, usd, micro] :
           {std::tuple<const char*, double, int64_t*>{"input_usd_per_million_tokens",
                                                      m.input_usd_per_million_tokens(),
                                                      &model.input_micro_usd_per_million_tokens},
            {"output_usd_per_million_tokens", m.output_usd_per_million_tokens(),
             &model.output_micro_usd_per_million_tokens}}) {
        absl::StatusOr<int64_t> price =
            MicroUsdPerMillion(usd, absl::StrCat(Path("models", i), ".", field));
        if (!price.ok()) return price.status();
        *micro = *price;
      }
    }
  }
  std::vector<Catalogue::Alias> aliases;
  for (const v1::ModelAlias& a : config.model_aliases()) aliases.push_back({a.alias(), a.model()});
  return Catalogue::Create(std::move(models), std::move(aliases));
}

EndpointModels EndpointModelsFromConfig(const v1::EndpointConfig& endpoint,
                                        const EndpointModels& defaults) {
  EndpointModels out = defaults;
  if (!endpoint.models().empty()) {
    out.models.assign(endpoint.models().begin(), endpoint.models().end());
    out.default_model = out.models.front();
  }
  if (!endpoint.default_model().empty()) out.default_model = endpoint.default_model();
  return out;
}

std::string AnonymousPlan(const v1::ServerConfig& config) {
  return config.anonymous_plan().empty() ? std::string(quota::kFreePlan) : config.anonymous_plan();
}

std::string EndpointProvider(const v1::EndpointConfig& endpoint) {
  return endpoint.provider().empty() ? std::string(kBuiltinProvider) : endpoint.provider();
}

std::string RedactedConfigText(const v1::ServerConfig& config) {
  v1::ServerConfig copy = config;
  if (!copy.admin_token().empty()) copy.set_admin_token(kRedacted);
  if (!copy.postgres_dsn().empty()) copy.set_postgres_dsn(kRedacted);
  for (v1::ProviderConfig& p : *copy.mutable_providers()) {
    if (!p.api_key().empty()) p.set_api_key(kRedacted);
  }
  std::string text;
  google::protobuf::TextFormat::PrintToString(copy, &text);
  return text;
}

absl::StatusOr<v1::ServerConfig> LoadServerConfig(const std::string& config_path,
                                                  const FlagOverrides& flags) {
  absl::StatusOr<v1::ServerConfig> config =
      config_path.empty() ? DefaultConfig() : LoadConfigFile(config_path);
  if (!config.ok()) return config.status();
  if (absl::Status s = ApplyFlagOverrides(*config, flags); !s.ok()) return s;
  ApplyEnvironment(*config);
  if (absl::Status s = ValidateConfig(*config); !s.ok()) return s;
  return config;
}

}  // namespace anyai::server
