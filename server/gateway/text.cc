#include "server/gateway/text.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"

namespace anyai::server {
namespace {

// Scans `s` and returns the offset of the first byte of the first ill-formed sequence, or
// s.size() when all of it is well-formed; `*count` receives the code points before that offset.
// The ranges are Unicode's Table 3-7 (Well-Formed UTF-8 Byte Sequences): the second byte's
// range depends on the lead byte, which is what excludes overlongs (E0 80..9F, F0 80..8F),
// surrogates (ED A0..BF) and code points above U+10FFFF (F4 90..BF, F5..FF).
size_t FirstInvalid(std::string_view s, int64_t* count) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  int64_t code_points = 0;
  while (i < n) {
    // ASCII fast path: eight bytes at a time while none has its high bit set.
    while (i + 8 <= n) {
      uint64_t word;
      std::memcpy(&word, p + i, sizeof(word));
      if ((word & 0x8080808080808080ULL) != 0) break;
      i += 8;
      code_points += 8;
    }
    if (i >= n) break;
    const unsigned char b0 = p[i];
    if (b0 < 0x80) {
      ++i;
      ++code_points;
      continue;
    }
    size_t length;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      length = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      length = 3;
      if (b0 == 0xE0) lo = 0xA0;  // overlong below U+0800
      if (b0 == 0xED) hi = 0x9F;  // surrogates U+D800..U+DFFF
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      length = 4;
      if (b0 == 0xF0) lo = 0x90;  // overlong below U+10000
      if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      // 0x80..0xC1 (stray continuation or overlong 2-byte lead) and 0xF5..0xFF.
      *count = code_points;
      return i;
    }
    if (i + length > n) {
      *count = code_points;
      return i;
    }
    if (p[i + 1] < lo || p[i + 1] > hi) {
      *count = code_points;
      return i;
    }
    for (size_t k = 2; k < length; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) {
        *count = code_points;
        return i;
      }
    }
    i += length;
    ++code_points;
  }
  *count = code_points;
  return n;
}

}  // namespace

absl::StatusOr<int64_t> CountCodePoints(std::string_view utf8) {
  int64_t count = 0;
  const size_t bad = FirstInvalid(utf8, &count);
  if (bad != utf8.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("not valid UTF-8 (bad byte 0x%02x at offset %d)",
                        static_cast<unsigned char>(utf8[bad]), bad));
  }
  return count;
}

bool IsValidUtf8(std::string_view utf8) {
  int64_t count = 0;
  return FirstInvalid(utf8, &count) == utf8.size();
}

}  // namespace anyai::server
