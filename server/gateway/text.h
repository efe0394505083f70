// UTF-8 as the gateway measures it. Plans limit user-supplied text in Unicode code points, not
// bytes (SPEC §2: "1000 characters" is 1000 "é" or 1000 emoji, not 1000 bytes), and text that
// is not well-formed UTF-8 is refused outright rather than counted loosely.
//
// Well-formed means RFC 3629 / Unicode Table 3-7: no overlong forms, no surrogates
// (U+D800..U+DFFF), nothing above U+10FFFF, no truncated or stray continuation bytes. NUL
// (U+0000) is a valid code point and is counted like any other.
//
// Thread-safe: pure functions with no shared state.
#ifndef ANYAI_SERVER_GATEWAY_TEXT_H_
#define ANYAI_SERVER_GATEWAY_TEXT_H_

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace anyai::server {

// The number of code points in `utf8`. InvalidArgument when `utf8` is not well-formed UTF-8;
// the message says at which byte offset the first bad sequence starts, e.g.
// "not valid UTF-8 (bad byte 0xc0 at offset 12)". Linear in the size, with a fast path for
// ASCII.
absl::StatusOr<int64_t> CountCodePoints(std::string_view utf8);

// True when `utf8` is well-formed UTF-8 (CountCodePoints would succeed).
bool IsValidUtf8(std::string_view utf8);

}  // namespace anyai::server

#endif  // ANYAI_SERVER_GATEWAY_TEXT_H_
