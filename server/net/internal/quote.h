// Internal to server/net/: how the parsers show the text they refuse. Not for other folders.
//
// Thread safety: a pure function.
#ifndef ANYAI_SERVER_NET_INTERNAL_QUOTE_H_
#define ANYAI_SERVER_NET_INTERNAL_QUOTE_H_

#include <string>
#include <string_view>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace anyai::net::internal {

// `text` in double quotes, C-escaped, so that control bytes and quotes in a refused value
// cannot garble the message (or a log line) it ends up in.
inline std::string Quoted(std::string_view text) {
  return absl::StrCat("\"", absl::CHexEscape(absl::string_view(text.data(), text.size())), "\"");
}

}  // namespace anyai::net::internal

#endif  // ANYAI_SERVER_NET_INTERNAL_QUOTE_H_
