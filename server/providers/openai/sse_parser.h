// An incremental parser of a Server-Sent Events stream (the WHATWG "text/event-stream"
// format, as OpenAI streams chat completions): feed it bytes in whatever pieces the network
// delivers them, and it hands over each event's data as soon as the blank line that ends the
// event has arrived.
//
//   SseParser parser;
//   while (bytes arrive)
//     if (!parser.Feed(bytes, [&](absl::string_view data) { ...; return keep_going; })) break;
//
// Lines end with "\n", "\r\n" or "\r" (also when a "\r\n" is split between two pieces). Of the
// fields only `data` is kept (several `data` lines of one event are joined with "\n"); `event`,
// `id`, `retry` and comment lines (":...") are ignored, as OpenAI's clients do. An event
// without data is not delivered. An unfinished event when the stream ends is dropped.
//
// Not thread-safe: one parser per stream.
#ifndef ANYAI_SERVER_PROVIDERS_OPENAI_SSE_PARSER_H_
#define ANYAI_SERVER_PROVIDERS_OPENAI_SSE_PARSER_H_

#include <cstddef>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"

namespace anyai::server {

class SseParser {
 public:
  // The longest line, or event's data, kept; a longer one makes Feed fail (a stream that
  // never ends its lines would otherwise grow the buffer without bound).
  static constexpr size_t kMaxLineBytes = size_t{4} << 20;

  // Parses `bytes`, calling `on_event` with each completed event's data, in order. Returns
  // false, and parses nothing more, once `on_event` returns false or a line exceeds
  // kMaxLineBytes (then too_long() is true).
  bool Feed(absl::string_view bytes, absl::FunctionRef<bool(absl::string_view data)> on_event);

  bool too_long() const { return too_long_; }

 private:
  // Handles one complete line (without its end); false when `on_event` asked to stop.
  bool Line(absl::string_view line, absl::FunctionRef<bool(absl::string_view)> on_event);

  std::string line_;       // the current line's bytes so far
  std::string data_;       // the current event's data so far
  bool has_data_ = false;  // a `data` field was seen in the current event
  bool skip_lf_ = false;   // the last piece ended with "\r": a leading "\n" belongs to it
  bool stopped_ = false;
  bool too_long_ = false;
};

}  // namespace anyai::server

#endif  // ANYAI_SERVER_PROVIDERS_OPENAI_SSE_PARSER_H_
