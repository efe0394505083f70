#include "server/gateway/log_limit.h"

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "google/protobuf/stubs/logging.h"

namespace anyai::server {
namespace {

constexpr absl::Duration kProtobufLogInterval = absl::Seconds(10);

LogLimiter& ProtobufLogLimiter() {
  static LogLimiter* const limiter = new LogLimiter({.interval = kProtobufLogInterval});
  return *limiter;
}

const char* LevelName(google::protobuf::LogLevel level) {
  switch (level) {
    case google::protobuf::LOGLEVEL_INFO:
      return "INFO";
    case google::protobuf::LOGLEVEL_WARNING:
      return "WARNING";
    case google::protobuf::LOGLEVEL_ERROR:
      return "ERROR";
    case google::protobuf::LOGLEVEL_FATAL:
      return "FATAL";
  }
  return "LOG";
}

// protobuf's own format (its DefaultLogHandler), plus the count of suppressed lines.
void LimitedLogHandler(google::protobuf::LogLevel level, const char* filename, int line,
                       const std::string& message) {
  std::optional<int64_t> suppressed = 0;
  if (level != google::protobuf::LOGLEVEL_FATAL) {
    suppressed = ProtobufLogLimiter().Admit(absl::StrCat(filename, ":", line), absl::Now());
    if (!suppressed.has_value()) return;
  }
  std::string text =
      absl::StrCat("[libprotobuf ", LevelName(level), " ", filename, ":", line, "] ", message);
  if (*suppressed > 0) {
    absl::StrAppend(&text, " (", *suppressed, " similar lines suppressed in the last ",
                    absl::FormatDuration(kProtobufLogInterval), ")");
  }
  text.push_back('\n');
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

}  // namespace

std::optional<int64_t> LogLimiter::Admit(std::string_view kind, absl::Time now) {
  const absl::string_view key(kind.data(), kind.size());
  absl::MutexLock lock(&mu_);
  auto it = kinds_.find(key);
  if (it == kinds_.end()) {
    if (kinds_.size() < options_.max_kinds) {
      kinds_.emplace(std::string(kind), Kind{.last_written = now, .suppressed = 0});
    }
    return 0;
  }
  Kind& k = it->second;
  if (now - k.last_written < options_.interval) {
    ++k.suppressed;
    return std::nullopt;
  }
  const int64_t suppressed = k.suppressed;
  k = Kind{.last_written = now, .suppressed = 0};
  return suppressed;
}

void LogRateLimited(std::string_view kind, std::string_view line) {
  static LogLimiter* const limiter = new LogLimiter({.interval = kProtobufLogInterval});
  const std::optional<int64_t> suppressed = limiter->Admit(kind, absl::Now());
  if (!suppressed.has_value()) return;
  std::string text = absl::StrCat("anyai-server: ", absl::string_view(line.data(), line.size()));
  if (*suppressed > 0) {
    absl::StrAppend(&text, " (", *suppressed, " similar lines suppressed in the last ",
                    absl::FormatDuration(kProtobufLogInterval), ")");
  }
  text.push_back('\n');
  std::fwrite(text.data(), 1, text.size(), stderr);
}

void InstallProtobufLogLimit() {
  ProtobufLogLimiter();  // built before any thread logs
  google::protobuf::SetLogHandler(&LimitedLogHandler);
}

}  // namespace anyai::server
