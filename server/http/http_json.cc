#include "server/http/http_json.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/duration.pb.h"
#include "nlohmann/json.hpp"
#include "server/gateway/errors.h"
#include "server/gateway/proto_time.h"

namespace anyai::server {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

// Top-level fields of a chat request that OpenAI SDKs may send and that have no effect here.
// clang-format off
constexpr std::string_view kIgnoredChatFields[] = {
    "user", "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs",
    "seed", "stop", "response_format", "tools", "tool_choice", "functions", "function_call",
    "parallel_tool_calls", "service_tier", "store", "metadata", "modalities", "audio",
    "prediction", "reasoning_effort", "web_search_options", "prompt_cache_key",
    "safety_identifier", "verbosity"};

// Fields of a chat message that have no effect here (an SDK echoing an earlier answer back
// sends some of them).
constexpr std::string_view kIgnoredMessageFields[] = {
    "name", "refusal", "tool_calls", "tool_call_id", "function_call", "audio", "annotations"};
// clang-format on

template <size_t N>
bool OneOf(const std::string_view (&names)[N], std::string_view name) {
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

absl::Status NotParsed(absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("We could not parse the JSON body of your request: ", why,
                   ". The API expects a JSON object as the request body."));
}

// The deepest nesting of arrays and objects in `text`, stopping early past `limit`. Strings
// are skipped (brackets in them do not count); the text need not be valid JSON.
int NestingDepth(std::string_view text, int limit) {
  int depth = 0;
  int deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

// A parser message made safe to show: at most 200 bytes, anything but printable ASCII as '?'.
std::string Printable(std::string_view text) {
  std::string out(text.substr(0, 200));
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return out;
}

// The body as a JSON object. nlohmann's parser checks UTF-8 (ill-formed bytes and unpaired
// surrogate escapes are parse errors).
absl::StatusOr<Json> ParseObject(std::string_view body) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return NotParsed("the body is empty");
  }
  if (NestingDepth(body, kMaxJsonDepth) > kMaxJsonDepth) {
    return NotParsed(absl::StrCat("it nests deeper than ", kMaxJsonDepth, " levels"));
  }
  Json json;
  try {
    json = Json::parse(body.begin(), body.end());
  } catch (const Json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 2: ...",
    // which may quote bytes of the body: keep it printable.
    std::string_view what = e.what();
    if (size_t end = what.find("] "); end != std::string_view::npos) what.remove_prefix(end + 2);
    return NotParsed(Printable(what));
  } catch (const Json::exception& e) {
    return NotParsed(Printable(e.what()));
  }
  if (!json.is_object()) return NotParsed(absl::StrCat("it is a JSON ", json.type_name()));
  return json;
}

std::string TypeOf(const Json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number_float()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return std::string(v.type_name());
}

absl::Status WrongType(const std::string& field, absl::string_view expected, const Json& v) {
  return InvalidField(field, absl::StrCat("must be ", expected, ", got ", TypeOf(v)));
}

// Readers of one field each; JSON null leaves the output untouched (absent).
absl::Status ReadString(const Json& v, const std::string& field, std::string* out) {
  if (v.is_null()) return absl::OkStatus();
  if (!v.is_string()) return WrongType(field, "a string", v);
  *out = v.get<std::string>();
  return absl::OkStatus();
}

absl::Status ReadBool(const Json& v, const std::string& field, std::optional<bool>* out) {
  if (v.is_null()) return absl::OkStatus();
  if (!v.is_boolean()) return WrongType(field, "a boolean", v);
  *out = v.get<bool>();
  return absl::OkStatus();
}

absl::Status ReadDouble(const Json& v, const std::string& field, std::optional<double>* out) {
  if (v.is_null()) return absl::OkStatus();
  if (!v.is_number()) return WrongType(field, "a number", v);
  *out = v.get<double>();
  return absl::OkStatus();
}

// A JSON integer (or a float with no fractional part, e.g. 5.0 or 1e3) in [min, max].
absl::Status ReadInteger(const Json& v, const std::string& field, int64_t min, int64_t max,
                         std::optional<int64_t>* out) {
  if (v.is_null()) return absl::OkStatus();
  const auto out_of_range = [&](std::string value) {
    return InvalidField(field, absl::StrCat("must be an integer in [", min, ", ", max, "], got ",
                                            std::move(value)));
  };
  if (v.is_number_unsigned()) {
    const uint64_t x = v.get<uint64_t>();
    if (x > static_cast<uint64_t>(max)) return out_of_range(absl::StrCat(x));
    *out = static_cast<int64_t>(x);
    return absl::OkStatus();
  }
  if (v.is_number_integer()) {
    const int64_t x = v.get<int64_t>();
    if (x < min || x > max) return out_of_range(absl::StrCat(x));
    *out = x;
    return absl::OkStatus();
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || d != std::trunc(d)) {
      return InvalidField(field, absl::StrCat("must be an integer, got ", d));
    }
    // Both bounds are exactly representable for int32 ranges; for int64 the comparison is
    // against the nearest doubles, and anything at or above 2^63 is refused.
    if (d < static_cast<double>(min) || d >= 9223372036854775808.0 ||
        d > static_cast<double>(max)) {
      return out_of_range(absl::StrCat(d));
    }
    *out = static_cast<int64_t>(d);
    return absl::OkStatus();
  }
  return WrongType(field, "an integer", v);
}

absl::Status ReadInt32(const Json& v, const std::string& field, std::optional<int32_t>* out) {
  std::optional<int64_t> x;
  if (absl::Status s = ReadInteger(v, field, std::numeric_limits<int32_t>::min(),
                                   std::numeric_limits<int32_t>::max(), &x);
      !s.ok()) {
    return s;
  }
  if (x.has_value()) *out = static_cast<int32_t>(*x);
  return absl::OkStatus();
}

// Field names in errors: a key of the body may be any bytes; keep them printable.
std::string FieldName(const std::string& key) { return QuoteForMessage(key, 64); }

absl::Status Unrecognized(const std::string& field) {
  return InvalidField(field, "unrecognized request argument supplied");
}

// A message's content: a string, null, or an array of text parts.
absl::Status ReadContent(const Json& v, const std::string& field, std::string* out) {
  if (v.is_null() || v.is_string()) return ReadString(v, field, out);
  if (!v.is_array()) return WrongType(field, "a string or an array of text parts", v);
  std::vector<std::string> texts;
  for (size_t i = 0; i < v.size(); ++i) {
    const Json& part = v[i];
    const std::string part_field = absl::StrCat(field, "[", i, "]");
    if (!part.is_object()) return WrongType(part_field, "an object", part);
    auto type = part.find("type");
    if (type == part.end() || !type->is_string()) {
      return InvalidField(part_field + ".type", "must be \"text\"");
    }
    if (type->get<std::string>() != "text") {
      return InvalidField(
          part_field + ".type",
          absl::StrCat("\"", QuoteForMessage(type->get<std::string>(), 40),
                       "\" parts are not supported, only \"text\" (describe images with "
                       "/v1/images/vision)"));
    }
    auto text = part.find("text");
    if (text == part.end() || !text->is_string()) {
      return InvalidField(part_field + ".text", "must be a string");
    }
    texts.push_back(text->get<std::string>());
  }
  *out = absl::StrJoin(texts, "\n");
  return absl::OkStatus();
}

absl::Status ReadMessage(const Json& v, const std::string& field, v1::ChatMessage* out) {
  if (!v.is_object()) return WrongType(field, "an object", v);
  for (const auto& [key, value] : v.items()) {
    const std::string sub = absl::StrCat(field, ".", FieldName(key));
    absl::Status s;
    if (key == "role") {
      s = ReadString(value, sub, out->mutable_role());
    } else if (key == "content") {
      s = ReadContent(value, sub, out->mutable_content());
    } else if (!OneOf(kIgnoredMessageFields, key)) {
      s = InvalidField(sub, "unrecognized field of a message");
    }
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

OrderedJson UsageJson(const v1::CompletionUsage& usage) {
  OrderedJson out;
  out["prompt_tokens"] = usage.prompt_tokens();
  out["completion_tokens"] = usage.completion_tokens();
  out["total_tokens"] = usage.total_tokens();
  return out;
}

// The fields every chunk opens with.
OrderedJson ChunkHead(const v1::ChatCompletionChunk& chunk) {
  OrderedJson out;
  out["id"] = chunk.id();
  out["object"] = chunk.object().empty() ? "chat.completion.chunk" : chunk.object();
  out["created"] = chunk.created();
  out["model"] = chunk.model();
  out["system_fingerprint"] = chunk.system_fingerprint();
  return out;
}

OrderedJson ModelObject(const v1::Model& model) {
  OrderedJson out;
  out["id"] = model.id();
  out["object"] = model.object().empty() ? "model" : model.object();
  out["created"] = model.created();
  out["owned_by"] = model.owned_by();
  return out;
}

// Seconds as a JSON number: an integer when whole, else rounded to the millisecond.
OrderedJson Seconds(const google::protobuf::Duration& d) {
  const int64_t millis = absl::ToInt64Milliseconds(absl::Ceil(FromProto(d), absl::Milliseconds(1)));
  if (millis % 1000 == 0) return millis / 1000;
  return static_cast<double>(millis) / 1000.0;
}

// Provider output is UTF-8 (proto strings), but a stray byte must never make dump() throw.
std::string Dump(const OrderedJson& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

// Appends `s` as a JSON string, byte for byte as Dump writes it: '"' and '\\' escaped, the
// control characters as \b \t \n \f \r or \u00xx, everything else as is. A string with a
// byte above 0x7f goes through Dump itself, which also replaces invalid UTF-8 (U+FFFD): the
// writers below, for the answers sent on every call, build no JSON tree.
void AppendJsonString(std::string* out, std::string_view s) {
  for (const char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      out->append(Dump(OrderedJson(std::string(s))));
      return;
    }
  }
  out->push_back('"');
  size_t plain = 0;  // the start of the run of bytes that need no escape
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(s.data() + plain, i - plain);
    plain = i + 1;
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\r':
        out->append("\\r");
        break;
      default: {
        static constexpr char kHex[] = "0123456789abcdef";
        const char escape[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
        out->append(escape, sizeof(escape));
      }
    }
  }
  out->append(s.data() + plain, s.size() - plain);
  out->push_back('"');
}

absl::StatusOr<ChatCompletionBody> ParseChatCompletionBody(std::string_view body) {
  absl::StatusOr<Json> json = ParseObject(body);
  if (!json.ok()) return json.status();
  ChatCompletionBody out;
  v1::ChatCompletionRequest& request = out.request;
  std::optional<int32_t> max_tokens, max_completion_tokens, top_k;
  std::optional<double> temperature, top_p;
  std::optional<bool> stream;
  for (const auto& [key, value] : json->items()) {
    absl::Status s;
    if (key == "model") {
      s = ReadString(value, key, request.mutable_model());
    } else if (key == "messages") {
      if (value.is_null()) continue;
      if (!value.is_array()) {
        s = WrongType(key, "an array", value);
      } else {
        for (size_t i = 0; i < value.size() && s.ok(); ++i) {
          s = ReadMessage(value[i], absl::StrCat("messages[", i, "]"), request.add_messages());
        }
      }
    } else if (key == "max_tokens") {
      s = ReadInt32(value, key, &max_tokens);
    } else if (key == "max_completion_tokens") {
      s = ReadInt32(value, key, &max_completion_tokens);
    } else if (key == "stream") {
      s = ReadBool(value, key, &stream);
    } else if (key == "temperature") {
      s = ReadDouble(value, key, &temperature);
    } else if (key == "top_p") {
      s = ReadDouble(value, key, &top_p);
    } else if (key == "top_k") {
      s = ReadInt32(value, key, &top_k);
    } else if (key == "n") {
      std::optional<int32_t> n;
      s = ReadInt32(value, key, &n);
      if (s.ok() && n.has_value() && *n != 1) {
        s = InvalidField("n", absl::StrCat("only 1 choice per request is supported, got ", *n));
      }
    } else if (key == "stream_options") {
      if (value.is_null()) continue;
      if (!value.is_object()) {
        s = WrongType(key, "an object", value);
      } else if (auto it = value.find("include_usage"); it != value.end()) {
        std::optional<bool> include;
        s = ReadBool(*it, "stream_options.include_usage", &include);
        out.include_usage = include.value_or(false);
      }
    } else if (!OneOf(kIgnoredChatFields, key)) {
      s = Unrecognized(FieldName(key));
    }
    if (!s.ok()) return s;
  }
  if (!max_tokens.has_value()) max_tokens = max_completion_tokens;
  if (max_tokens.has_value()) request.set_max_tokens(*max_tokens);
  if (stream.has_value()) request.set_stream(*stream);
  if (temperature.has_value()) request.set_temperature(*temperature);
  if (top_p.has_value()) request.set_top_p(*top_p);
  if (top_k.has_value()) request.set_top_k(*top_k);
  out.stream = stream.value_or(false);
  if (!out.stream) out.include_usage = false;
  return out;
}

absl::StatusOr<v1::GenerateImagesRequest> ParseGenerateImagesBody(std::string_view body) {
  absl::StatusOr<Json> json = ParseObject(body);
  if (!json.ok()) return json.status();
  v1::GenerateImagesRequest request;
  for (const auto& [key, value] : json->items()) {
    absl::Status s;
    if (key == "prompt") {
      s = ReadString(value, key, request.mutable_prompt());
    } else if (key == "model") {
      s = ReadString(value, key, request.mutable_model());
    } else if (key == "n") {
      std::optional<int32_t> n;
      s = ReadInt32(value, key, &n);
      if (n.has_value()) request.set_n(*n);
    } else if (key == "quality") {
      s = ReadString(value, key, request.mutable_quality());
    } else if (key == "response_format") {
      s = ReadString(value, key, request.mutable_response_format());
    } else if (key == "size") {
      s = ReadString(value, key, request.mutable_size());
    } else if (key != "user" && key != "style") {
      s = Unrecognized(FieldName(key));
    }
    if (!s.ok()) return s;
  }
  return request;
}

std::string ChatCompletionJson(const v1::ChatCompletion& completion) {
  // Written directly (the same bytes as a dumped nlohmann::ordered_json of these fields in
  // this order): this is every chat call's answer.
  std::string out;
  size_t contents = 0;
  for (const v1::ChatCompletionChoice& c : completion.choices()) {
    contents += c.message().content().size() + 96;
  }
  out.reserve(256 + completion.id().size() + completion.model().size() + contents);
  out.append(R"({"id":)");
  AppendJsonString(&out, completion.id());
  out.append(R"(,"object":)");
  AppendJsonString(&out, completion.object().empty() ? "chat.completion" : completion.object());
  absl::StrAppend(&out, R"(,"created":)", completion.created(), R"(,"model":)");
  AppendJsonString(&out, completion.model());
  out.append(R"(,"system_fingerprint":)");
  AppendJsonString(&out, completion.system_fingerprint());
  out.append(R"(,"choices":[)");
  bool first = true;
  for (const v1::ChatCompletionChoice& c : completion.choices()) {
    if (!first) out.push_back(',');
    first = false;
    absl::StrAppend(&out, R"({"index":)", c.index(), R"(,"message":{"role":)");
    AppendJsonString(&out, c.message().role().empty() ? "assistant" : c.message().role());
    out.append(R"(,"content":)");
    AppendJsonString(&out, c.message().content());
    out.append(R"(},"logprobs":null,"finish_reason":)");
    if (c.finish_reason().empty()) {
      out.append("null");
    } else {
      AppendJsonString(&out, c.finish_reason());
    }
    out.push_back('}');
  }
  const v1::CompletionUsage& usage = completion.usage();
  absl::StrAppend(&out, R"(],"usage":{"prompt_tokens":)", usage.prompt_tokens(),
                  R"(,"completion_tokens":)", usage.completion_tokens(), R"(,"total_tokens":)",
                  usage.total_tokens(), "}}");
  return out;
}

std::string ChatCompletionChunkJson(const v1::ChatCompletionChunk& chunk, bool usage_field) {
  OrderedJson out = ChunkHead(chunk);
  OrderedJson choices = OrderedJson::array();
  for (const v1::ChatCompletionChunkChoice& c : chunk.choices()) {
    OrderedJson choice;
    choice["index"] = c.index();
    OrderedJson delta = OrderedJson::object();
    if (c.delta().has_role()) delta["role"] = c.delta().role();
    if (c.delta().has_content()) delta["content"] = c.delta().content();
    choice["delta"] = std::move(delta);
    choice["logprobs"] = nullptr;
    if (c.has_finish_reason()) {
      choice["finish_reason"] = c.finish_reason();
    } else {
      choice["finish_reason"] = nullptr;
    }
    choices.push_back(std::move(choice));
  }
  out["choices"] = std::move(choices);
  if (usage_field) out["usage"] = nullptr;
  return Dump(out);
}

std::string ChatUsageChunkJson(const v1::ChatCompletionChunk& chunk) {
  OrderedJson out = ChunkHead(chunk);
  out["choices"] = OrderedJson::array();
  out["usage"] = UsageJson(chunk.usage());
  return Dump(out);
}

std::string ModelListJson(const v1::ListModelsResponse& models) {
  OrderedJson out;
  out["object"] = models.object().empty() ? "list" : models.object();
  OrderedJson data = OrderedJson::array();
  for (const v1::Model& m : models.data()) data.push_back(ModelObject(m));
  out["data"] = std::move(data);
  return Dump(out);
}

std::string ModelJson(const v1::Model& model) { return Dump(ModelObject(model)); }

std::string GenerateImagesJson(const v1::GenerateImagesResponse& response) {
  OrderedJson out;
  out["created"] = response.created();
  OrderedJson data = OrderedJson::array();
  for (const v1::Image& image : response.data()) {
    OrderedJson item = OrderedJson::object();
    if (image.has_b64_json()) {
      item["b64_json"] = image.b64_json();
    } else {
      item["url"] = image.url();
    }
    data.push_back(std::move(item));
  }
  out["data"] = std::move(data);
  return Dump(out);
}

std::string AskChunkJson(const v1::AskChunk& chunk) {
  OrderedJson out;
  out["message"] = chunk.message();
  out["url"] = chunk.url();
  return Dump(out);
}

std::string DescribeImageJson(const v1::DescribeImageResponse& response) {
  OrderedJson out;
  out["description"] = response.description();
  out["model"] = response.model();
  return Dump(out);
}

std::string CheckKeyJson(const v1::CheckKeyResponse& response) {
  const auto windows_json = [](const google::protobuf::RepeatedPtrField<v1::WindowUsage>& from) {
    OrderedJson windows = OrderedJson::array();
    for (const v1::WindowUsage& w : from) {
      OrderedJson window;
      window["window_seconds"] = Seconds(w.window());
      window["used"] = w.used();
      window["reserved"] = w.reserved();
      window["limit"] = w.limit();
      window["remaining"] = w.remaining();
      window["reset_seconds"] = Seconds(w.reset());
      windows.push_back(std::move(window));
    }
    return windows;
  };
  OrderedJson out;
  out["plan"] = response.plan();
  out["masked_key"] = response.masked_key();
  out["created"] = response.created();
  OrderedJson classes = OrderedJson::array();
  for (const v1::ClassUsage& c : response.classes()) {
    OrderedJson usage;
    usage["feature_class"] = c.feature_class();
    usage["windows"] = windows_json(c.windows());
    usage["token_windows"] = windows_json(c.token_windows());
    usage["spend_windows"] = windows_json(c.spend_windows());
    usage["in_flight"] = c.in_flight();
    usage["max_concurrent"] = c.max_concurrent();
    classes.push_back(std::move(usage));
  }
  out["classes"] = std::move(classes);
  return Dump(out);
}

}  // namespace anyai::server
