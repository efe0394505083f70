#include "server/providers/builtin/builtin_provider.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "anyai/v1/anyai.pb.h"
#include "server/gateway/catalogue.h"
#include "server/gateway/token_count.h"
#include "server/gateway/validation.h"
#include "server/net/url.h"
#include "server/providers/builtin/image_renderer.h"

namespace anyai::server {
namespace {

constexpr char kAssistant[] = "assistant";
constexpr char kUser[] = "user";
constexpr char kSystem[] = "system";
constexpr char kStop[] = "stop";
constexpr char kLength[] = "length";

// Absent optional fields take the defaults the Gateway fills in (validation.h's constants, the
// default models of catalogue.h), so that the provider answers the same when called directly.
// GenerateImages' steps by quality: "hd" paints the ridges with more octaves.
constexpr int kStandardSteps = 25;
constexpr int kHdSteps = 50;

// How much of a user's text the replies quote, in tokens, and of a URL, in bytes.
constexpr int kQuoteTokens = 24;
constexpr size_t kMaxQuotedUrlBytes = 200;
constexpr size_t kMaxAskKeywords = 3;
constexpr size_t kMinAskKeywordChars = 5;

// FNV-1a, 64-bit: stable across processes and runs, unlike std::hash and absl::Hash.
class StableHash {
 public:
  void AddBytes(absl::string_view bytes) {
    for (unsigned char c : bytes) h_ = (h_ ^ c) * 0x100000001b3ULL;
  }
  void AddU64(uint64_t v) {
    for (int i = 0; i < 8; ++i) h_ = (h_ ^ ((v >> (8 * i)) & 0xff)) * 0x100000001b3ULL;
  }
  // Length-prefixed, so that ("ab", "c") and ("a", "bc") hash apart.
  void AddField(absl::string_view s) {
    AddU64(s.size());
    AddBytes(s);
  }
  void AddDouble(double d) {
    uint64_t bits;
    static_assert(sizeof(bits) == sizeof(d));
    std::memcpy(&bits, &d, sizeof(bits));
    AddU64(bits);
  }
  // splitmix64's finaliser over FNV's state, so that every input bit reaches every output bit.
  uint64_t value() const {
    uint64_t z = h_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  uint64_t h_ = 0xcbf29ce484222325ULL;
};

// Unique per completion, as OpenAI's ids are (clients use them to tell completions apart):
// a hash of the request and a process-wide sequence number.
std::string CompletionId(const v1::ChatCompletionRequest& request) {
  static std::atomic<uint64_t> sequence{0};
  StableHash h;
  h.AddU64(sequence.fetch_add(1, std::memory_order_relaxed));
  h.AddField(request.model());
  h.AddU64(static_cast<uint64_t>(request.messages_size()));
  for (const v1::ChatMessage& m : request.messages()) {
    h.AddField(m.role());
    h.AddField(m.content());
  }
  h.AddU64(request.has_max_tokens() ? 1 + static_cast<uint64_t>(request.max_tokens()) : 0);
  h.AddU64(request.has_temperature());
  h.AddDouble(request.temperature());
  h.AddU64(request.has_top_p());
  h.AddDouble(request.top_p());
  h.AddU64(request.has_top_k() ? 1 + static_cast<uint64_t>(request.top_k()) : 0);
  return absl::StrCat("chatcmpl-", absl::Hex(h.value(), absl::kZeroPad16));
}

// `s` cut to at most `max_bytes` bytes without splitting a UTF-8 sequence, with "…" appended
// when something was cut.
std::string TruncateUtf8(absl::string_view s, size_t max_bytes) {
  if (s.size() <= max_bytes) return std::string(s);
  size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return absl::StrCat(s.substr(0, end), "…");
}

// The first `max_tokens` tokens of `text` with every whitespace run made one space, and "…"
// when more followed: a one-line quotation.
std::string Quote(absl::string_view text, int max_tokens) {
  const std::vector<absl::string_view> tokens = SplitTokens(text);
  std::string out;
  const size_t keep = std::min(tokens.size(), static_cast<size_t>(max_tokens));
  for (size_t i = 0; i < keep; ++i) {
    const absl::string_view token = tokens[i];
    size_t begin = 0;
    while (begin < token.size() && absl::ascii_isspace(static_cast<unsigned char>(token[begin]))) {
      ++begin;
    }
    if (begin > 0 && !out.empty()) out.push_back(' ');
    out.append(std::string(absl::StripTrailingAsciiWhitespace(token.substr(begin))));
  }
  if (keep < tokens.size()) out.append("…");
  return out;
}

std::string Plural(int64_t n, absl::string_view one, absl::string_view many) {
  return absl::StrCat(n, " ", std::string(n == 1 ? one : many));
}

// The whole reply to `request`, before max_tokens: what the builtin is, then the last user
// message quoted, then the shape of the conversation. It never ends in whitespace.
std::string ReplyText(const v1::ChatCompletionRequest& request) {
  std::string out =
      absl::StrCat("This is the AnyAI gateway's builtin stand-in answering for \"", request.model(),
                   "\"; it is not a language model and does not ", "understand your message.");
  const v1::ChatMessage* quoted = nullptr;
  for (const v1::ChatMessage& m : request.messages()) {
    if (m.role() == kUser) quoted = &m;
  }
  if (quoted == nullptr && request.messages_size() > 0) {
    quoted = &request.messages(request.messages_size() - 1);
  }
  if (quoted != nullptr) {
    absl::StrAppend(&out, " Your ", quoted->role() == kUser ? "last message" : "conversation ends",
                    " (", Plural(CountTokens(quoted->content()), "token", "tokens"), ") reads: \"",
                    Quote(quoted->content(), kQuoteTokens), "\".");
  }
  const bool has_system = request.messages_size() > 0 && request.messages(0).role() == kSystem;
  absl::StrAppend(&out, " The conversation has ",
                  Plural(request.messages_size(), "message", "messages"),
                  has_system ? ", the first a system prompt." : ".",
                  " Route this model to an upstream provider for real answers.");
  return out;
}

absl::Status ClientGone() { return absl::CancelledError("the client went away"); }

struct Answer {
  std::string id;
  int64_t created = 0;
  std::string content;  // the reply, cut at max_tokens
  std::string finish_reason;
  v1::CompletionUsage usage;
};

Answer Compose(const v1::ChatCompletionRequest& request, absl::Time now) {
  Answer a;
  a.id = CompletionId(request);
  a.created = absl::ToUnixSeconds(now);
  const std::string reply = ReplyText(request);
  const std::vector<absl::string_view> tokens = SplitTokens(reply);
  size_t keep = tokens.size();
  a.finish_reason = kStop;
  if (request.has_max_tokens()) {
    const size_t limit = static_cast<size_t>(std::max(0, request.max_tokens()));
    if (limit < keep) {
      keep = limit;
      a.finish_reason = kLength;
    }
  }
  for (size_t i = 0; i < keep; ++i) a.content.append(tokens[i].data(), tokens[i].size());
  int prompt_tokens = 0;
  for (const v1::ChatMessage& m : request.messages()) prompt_tokens += CountTokens(m.content());
  a.usage.set_prompt_tokens(prompt_tokens);
  a.usage.set_completion_tokens(static_cast<int>(keep));
  a.usage.set_total_tokens(prompt_tokens + static_cast<int>(keep));
  return a;
}

v1::ChatCompletionChunk ChunkHeader(const Answer& answer, const v1::ChatCompletionRequest& req) {
  v1::ChatCompletionChunk chunk;
  chunk.set_id(answer.id);
  chunk.set_object("chat.completion.chunk");
  chunk.set_created(answer.created);
  chunk.set_model(req.model());
  chunk.set_system_fingerprint(BuiltinProvider::kSystemFingerprint);
  chunk.add_choices()->set_index(0);
  return chunk;
}

// Parses "<width>x<height>", each side at least 1.
absl::StatusOr<std::pair<int, int>> ParseSize(absl::string_view size) {
  const size_t x = size.find('x');
  int width = 0;
  int height = 0;
  if (x == absl::string_view::npos || !absl::SimpleAtoi(size.substr(0, x), &width) ||
      !absl::SimpleAtoi(size.substr(x + 1), &height) || width < 1 || height < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("size: \"", std::string(size), "\" is not <width>x<height>"));
  }
  return std::make_pair(width, height);
}

// Scales (width, height) down, keeping the aspect ratio, so that neither exceeds `max_side`.
std::pair<int, int> CapSize(int width, int height, int max_side) {
  const int longest = std::max(width, height);
  if (longest <= max_side) return {width, height};
  const double scale = static_cast<double>(max_side) / longest;
  return {std::max(1, static_cast<int>(std::lround(width * scale))),
          std::max(1, static_cast<int>(std::lround(height * scale)))};
}

// Percent-encodes a query value: unreserved characters stay, spaces become '+'.
std::string QueryEscape(absl::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else if (c == ' ') {
      out.push_back('+');
    } else {
      constexpr char kHex[] = "0123456789ABCDEF";
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  return out;
}

std::string PlaceholderSearchUrl(absl::string_view query) {
  return absl::StrCat("https://example.com/search?q=", QueryEscape(query));
}

// Up to kMaxAskKeywords distinct (ignoring case) ASCII words of at least kMinAskKeywordChars
// characters, in order of appearance.
std::vector<std::string> Keywords(absl::string_view text) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size() && out.size() < kMaxAskKeywords) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(text[i]))) {
      ++i;
      continue;
    }
    const size_t begin = i;
    while (i < text.size() && absl::ascii_isalnum(static_cast<unsigned char>(text[i]))) ++i;
    std::string word = absl::AsciiStrToLower(text.substr(begin, i - begin));
    if (word.size() >= kMinAskKeywordChars &&
        std::find(out.begin(), out.end(), word) == out.end()) {
      out.push_back(std::move(word));
    }
  }
  return out;
}

// What a file name's extension says about an image, or "" when it says nothing.
std::string ImageKindFromPath(absl::string_view path) {
  const size_t slash = path.rfind('/');
  const absl::string_view name = slash == absl::string_view::npos ? path : path.substr(slash + 1);
  const size_t dot = name.rfind('.');
  if (dot == absl::string_view::npos) return "";
  const std::string ext = absl::AsciiStrToLower(name.substr(dot + 1));
  if (ext == "png") return "PNG";
  if (ext == "jpg" || ext == "jpeg") return "JPEG";
  if (ext == "gif") return "GIF";
  if (ext == "webp") return "WebP";
  if (ext == "svg") return "SVG";
  if (ext == "bmp") return "BMP";
  return "";
}

}  // namespace

BuiltinProvider::BuiltinProvider(std::function<absl::Time()> clock) : clock_(std::move(clock)) {}

absl::StatusOr<v1::ChatCompletion> BuiltinProvider::Chat(const v1::ChatCompletionRequest& request) {
  Answer answer = Compose(request, clock_());
  v1::ChatCompletion completion;
  completion.set_id(std::move(answer.id));
  completion.set_object("chat.completion");
  completion.set_created(answer.created);
  completion.set_model(request.model());
  completion.set_system_fingerprint(kSystemFingerprint);
  v1::ChatCompletionChoice* choice = completion.add_choices();
  choice->set_index(0);
  choice->mutable_message()->set_role(kAssistant);
  choice->mutable_message()->set_content(std::move(answer.content));
  choice->set_finish_reason(std::move(answer.finish_reason));
  *completion.mutable_usage() = std::move(answer.usage);
  return completion;
}

absl::Status BuiltinProvider::StreamChat(
    const v1::ChatCompletionRequest& request,
    absl::FunctionRef<bool(const v1::ChatCompletionChunk&)> emit) {
  const Answer answer = Compose(request, clock_());

  // First: the role, with empty content as OpenAI's first chunk has it.
  v1::ChatCompletionChunk chunk = ChunkHeader(answer, request);
  chunk.mutable_choices(0)->mutable_delta()->set_role(kAssistant);
  chunk.mutable_choices(0)->mutable_delta()->set_content("");
  if (!emit(chunk)) return ClientGone();

  // Then the content, kTokensPerChunk tokens at a time. A prefix of the reply cut after a
  // token splits into exactly the same tokens (token_count.h), so these are the counted ones.
  const std::vector<absl::string_view> tokens = SplitTokens(answer.content);
  for (size_t i = 0; i < tokens.size(); i += kTokensPerChunk) {
    const size_t end = std::min(tokens.size(), i + kTokensPerChunk);
    const char* begin = tokens[i].data();
    const char* stop = tokens[end - 1].data() + tokens[end - 1].size();
    chunk = ChunkHeader(answer, request);
    chunk.mutable_choices(0)->mutable_delta()->set_content(
        std::string(begin, static_cast<size_t>(stop - begin)));
    if (!emit(chunk)) return ClientGone();
  }

  // Last: no delta, the finish reason and the usage of the whole completion.
  chunk = ChunkHeader(answer, request);
  chunk.mutable_choices(0)->mutable_delta();
  chunk.mutable_choices(0)->set_finish_reason(answer.finish_reason);
  *chunk.mutable_usage() = answer.usage;
  if (!emit(chunk)) return ClientGone();
  return absl::OkStatus();
}

absl::StatusOr<v1::GenerateImagesResponse> BuiltinProvider::GenerateImages(
    const v1::GenerateImagesRequest& request) {
  const int n = request.has_n() ? request.n() : kDefaultImagesPerRequest;
  if (n < 1 || n > kMaxImagesPerRequest) {
    return absl::InvalidArgumentError(
        absl::StrCat("n: must be in [1, ", kMaxImagesPerRequest, "]"));
  }
  const std::string format =
      request.response_format().empty() ? kDefaultImageResponseFormat : request.response_format();
  if (format != "url" && format != "b64_json") {
    return absl::InvalidArgumentError(
        absl::StrCat("response_format: \"", format, "\" is neither \"url\" nor \"b64_json\""));
  }
  absl::StatusOr<std::pair<int, int>> size =
      ParseSize(request.size().empty() ? kDefaultImageSize : request.size());
  if (!size.ok()) return size.status();
  const auto [width, height] = CapSize(size->first, size->second, kMaxGeneratedImageSide);
  const std::string quality = request.quality().empty() ? kDefaultImageQuality : request.quality();

  v1::GenerateImagesResponse response;
  response.set_created(absl::ToUnixSeconds(clock_()));
  for (int i = 0; i < n; ++i) {
    RenderRequest render;
    render.prompt = request.prompt();
    render.width = width;
    render.height = height;
    render.steps = quality == "hd" ? kHdSteps : kStandardSteps;
    render.seed = i;  // the n images of one request differ
    render.model = request.model().empty() ? kDefaultImageGenerationModel : request.model();
    absl::StatusOr<std::string> png = RenderPng(render);
    if (!png.ok()) return png.status();
    v1::Image* image = response.add_data();
    if (format == "url") {
      image->set_url(absl::StrCat("data:image/png;base64,", absl::Base64Escape(*png)));
    } else {
      image->set_b64_json(absl::Base64Escape(*png));
    }
  }
  return response;
}

absl::StatusOr<v1::ImagineResponse> BuiltinProvider::Imagine(const v1::ImagineRequest& request) {
  RenderRequest render;
  render.prompt = request.prompt();
  render.negative_prompt = request.negative_prompt();
  render.width = request.has_width() ? request.width() : kDefaultImagineSide;
  render.height = request.has_height() ? request.height() : kDefaultImagineSide;
  render.steps = request.has_steps() ? request.steps() : kDefaultImagineSteps;
  render.seed = request.has_seed() ? request.seed() : 0;
  render.model = request.model().empty() ? kDefaultImagineModel : request.model();
  absl::StatusOr<std::string> png = RenderPng(render);
  if (!png.ok()) return png.status();
  v1::ImagineResponse response;
  response.set_image(std::move(*png));
  response.set_content_type("image/png");
  return response;
}

absl::Status BuiltinProvider::Ask(const v1::AskRequest& request,
                                  absl::FunctionRef<bool(const v1::AskChunk&)> emit) {
  const std::string question_url =
      PlaceholderSearchUrl(TruncateUtf8(request.prompt(), kMaxQuotedUrlBytes));
  std::vector<v1::AskChunk> chunks;
  auto add = [&chunks](std::string message, std::string url) {
    v1::AskChunk& chunk = chunks.emplace_back();
    chunk.set_message(std::move(message));
    chunk.set_url(std::move(url));
  };
  add("This is the AnyAI gateway's builtin stand-in for GlobalAsk: it does not search the web, "
      "and its source links are placeholders. ",
      question_url);
  add(absl::StrCat("You asked: \"", Quote(request.prompt(), kQuoteTokens), "\" (",
                   Plural(CountTokens(request.prompt()), "token", "tokens"), "). "),
      question_url);
  for (const std::string& word : Keywords(request.prompt())) {
    add(absl::StrCat("A real answer would cite a source on \"", word, "\". "),
        PlaceholderSearchUrl(word));
  }
  add("Route /v1/ask to an upstream provider for real answers.", "");
  for (const v1::AskChunk& chunk : chunks) {
    if (!emit(chunk)) return ClientGone();
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::DescribeImageResponse> BuiltinProvider::DescribeImage(
    const v1::DescribeImageRequest& request) {
  const std::string model(request.model().empty() ? kDefaultVisionModel : request.model());
  // Only the URL's text is read; the image is never downloaded.
  // The Gateway has validated the URL; called directly, a provider may see one that does not
  // parse, which is then described as having no host.
  const absl::StatusOr<net::Url> url = net::Url::Parse(request.url());
  const std::string host = url.ok() ? url->host.name : "";
  const std::string path = url.ok() ? url->path : "";
  std::string text = absl::StrCat(
      "This is the AnyAI gateway's builtin stand-in answering for \"", model,
      "\": it never downloads images, so it cannot say what this one shows. From its URL alone: "
      "it is served by ",
      host.empty() ? "an unnamed host" : TruncateUtf8(host, kMaxQuotedUrlBytes));
  if (!path.empty() && path != "/") {
    absl::StrAppend(&text, " at the path ", TruncateUtf8(path, kMaxQuotedUrlBytes));
  }
  const std::string kind = ImageKindFromPath(path);
  if (!kind.empty()) absl::StrAppend(&text, ", and its name suggests a ", kind, " file");
  absl::StrAppend(&text, ". Route vision to an upstream provider for real descriptions.");
  v1::DescribeImageResponse response;
  response.set_description(std::move(text));
  response.set_model(model);
  return response;
}

}  // namespace anyai::server
