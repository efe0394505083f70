// Log lines that a client can trigger at will, rate limited so that a flood of bad requests
// cannot flood the log (issue 12): protobuf logs one line per message that has invalid UTF-8 in
// a string field ("String field '...' contains invalid UTF-8 data when parsing a protocol
// buffer"), from inside its parser, for every gRPC request that carries one.
//
//   InstallProtobufLogLimit();  // once at start, before serving (Server::BuildGateway does)
//
// After it, protobuf writes at most one line per kind (its source file and line) per 10 s to
// stderr, in its own format, and the next line of that kind written says how many were
// suppressed meanwhile: "[libprotobuf ERROR .../wire_format_lite.cc:581] String field ...
// (1234 similar lines suppressed in the last 10s)". FATAL lines are always written.
//
// Thread safety: LogLimiter and LogRateLimited are thread-safe (one mutex around a small map).
// Installing the handler is not (protobuf's SetLogHandler is not): call it before any thread
// parses protos.
#ifndef ANYAI_SERVER_GATEWAY_LOG_LIMIT_H_
#define ANYAI_SERVER_GATEWAY_LOG_LIMIT_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace anyai::server {

// At most one line per kind per `interval`.
class LogLimiter {
 public:
  struct Options {
    absl::Duration interval = absl::Seconds(10);
    // The most kinds remembered; past it, every line of a new kind is written (the kinds of a
    // program's log statements are few: this only bounds memory).
    size_t max_kinds = 1024;
  };

  explicit LogLimiter(Options options) : options_(options) {}

  // Whether a line of `kind` may be written at `now`. When it may, the number of lines of that
  // kind suppressed since the last one written (0 if none); nullopt when it is suppressed.
  std::optional<int64_t> Admit(std::string_view kind, absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Kind {
    absl::Time last_written;
    int64_t suppressed = 0;
  };

  const Options options_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Kind> kinds_ ABSL_GUARDED_BY(mu_);
};

// Installs the rate-limited protobuf log handler described above, process-wide. Idempotent.
void InstallProtobufLogLimit();

// Writes "anyai-server: <line>" to stderr, at most once per `kind` per 10 s (with the count of
// lines suppressed meanwhile): for what the gateway logs on a path a client can drive, such as
// the details of a storage or upstream failure that the client is answered without.
// Thread-safe.
void LogRateLimited(std::string_view kind, std::string_view line);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_LOG_LIMIT_H_
