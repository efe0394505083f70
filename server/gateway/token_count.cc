#include "server/gateway/token_count.h"

#include <cstddef>
#include <vector>

#include "absl/strings/string_view.h"

namespace anyai::server {
namespace {

bool IsSpace(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool IsAsciiAlnum(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// The length in bytes of the UTF-8 sequence starting at text[i]; 1 for an invalid byte, so
// that a broken sequence costs one token per byte and never swallows what follows.
size_t CodePointLength(absl::string_view text, size_t i) {
  const unsigned char lead = static_cast<unsigned char>(text[i]);
  size_t len;
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) {
    len = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    len = 3;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    len = 4;
  } else {
    return 1;
  }
  if (i + len > text.size()) return 1;
  for (size_t k = 1; k < len; ++k) {
    if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return 1;
  }
  return len;
}

// Calls on_token(begin, end) for every token of `text`, in order.
template <typename F>
void ForEachToken(absl::string_view text, F on_token) {
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    const size_t begin = i;
    while (i < n && IsSpace(static_cast<unsigned char>(text[i]))) ++i;
    if (i == n) return;  // trailing whitespace: joined to the last token below
    if (IsAsciiAlnum(static_cast<unsigned char>(text[i]))) {
      const size_t word_begin = i;
      while (i < n && i - word_begin < static_cast<size_t>(kWordPieceChars) &&
             IsAsciiAlnum(static_cast<unsigned char>(text[i]))) {
        ++i;
      }
    } else {
      i += CodePointLength(text, i);
    }
    // Whitespace that ends the text belongs to this, the last, token.
    size_t end = i;
    while (end < n && IsSpace(static_cast<unsigned char>(text[end]))) ++end;
    if (end == n) i = n;
    on_token(begin, i);
  }
}

}  // namespace

std::vector<absl::string_view> SplitTokens(absl::string_view text) {
  std::vector<absl::string_view> tokens;
  ForEachToken(
      text, [&](size_t begin, size_t end) { tokens.push_back(text.substr(begin, end - begin)); });
  return tokens;
}

int CountTokens(absl::string_view text) {
  int count = 0;
  ForEachToken(text, [&](size_t, size_t) { ++count; });
  return count;
}

}  // namespace anyai::server
