#include "server/providers/openai/sse_parser.h"

#include <cstddef>

#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"

namespace anyai::server {

bool SseParser::Feed(absl::string_view bytes,
                     absl::FunctionRef<bool(absl::string_view data)> on_event) {
  if (stopped_) return false;
  size_t i = 0;
  if (skip_lf_ && !bytes.empty()) {
    skip_lf_ = false;
    if (bytes[0] == '\n') i = 1;
  }
  while (i < bytes.size()) {
    const size_t end = bytes.find_first_of("\r\n", i);
    if (end == absl::string_view::npos) {
      if (line_.size() + (bytes.size() - i) > kMaxLineBytes) {
        too_long_ = stopped_ = true;
        return false;
      }
      line_.append(bytes.data() + i, bytes.size() - i);
      break;
    }
    bool keep_going;
    if (line_.empty()) {
      keep_going = Line(bytes.substr(i, end - i), on_event);
    } else {
      line_.append(bytes.data() + i, end - i);
      keep_going = Line(line_, on_event);
      line_.clear();
    }
    if (!keep_going) {
      stopped_ = true;
      return false;
    }
    i = end + 1;
    if (bytes[end] == '\r') {
      if (i == bytes.size()) {
        skip_lf_ = true;
      } else if (bytes[i] == '\n') {
        ++i;
      }
    }
  }
  return true;
}

bool SseParser::Line(absl::string_view line, absl::FunctionRef<bool(absl::string_view)> on_event) {
  if (line.empty()) {
    if (!has_data_) return true;
    has_data_ = false;
    const bool keep_going = on_event(data_);
    data_.clear();
    return keep_going;
  }
  if (line[0] == ':') return true;  // a comment (keep-alive)
  const size_t colon = line.find(':');
  const absl::string_view field = line.substr(0, colon);
  if (field != "data") return true;
  absl::string_view value =
      colon == absl::string_view::npos ? absl::string_view() : line.substr(colon + 1);
  if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  if (data_.size() + value.size() + 1 > kMaxLineBytes) {
    too_long_ = true;
    return false;
  }
  if (has_data_) data_.push_back('\n');
  data_.append(value.data(), value.size());
  has_data_ = true;
  return true;
}

}  // namespace anyai::server
